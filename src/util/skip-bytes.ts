/**
 * The chunks of `chunks` past its first `skip` bytes: a body that resends what was delivered
 * already (an upstream that ignored a Range and restarted at 0, a source taken up again at an
 * offset before the reader's) is read on without handing those bytes out twice.
 */
export async function* skipBytes(chunks: AsyncIterable<Buffer>, skip: number): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of chunks) {
    if (skip <= 0) yield chunk;
    else if (chunk.length <= skip) skip -= chunk.length;
    else {
      yield chunk.subarray(skip);
      skip = 0;
    }
  }
}
