/** The status page's CSS (inline: the CSP allows no external style). */
export const STYLES = String.raw`  :root { --fg: #1d2330; --muted: #6b7280; --line: #e5e7eb; --cache: #2f855a; --upstream: #c05621; font-family: system-ui, sans-serif; color: var(--fg); }
  body { margin: 0 auto; max-width: 1100px; padding: 1.5rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
  .sub { color: var(--muted); font-size: .85rem; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: .75rem; margin-top: 1rem; }
  .card { border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; }
  .card .label { color: var(--muted); font-size: .8rem; }
  .card .value { font-size: 1.5rem; font-weight: 600; margin-top: .2rem; }
  .card .detail { color: var(--muted); font-size: .8rem; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); }
  th { color: var(--muted); font-weight: 500; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font-size: .8rem; }
  .hit { color: var(--cache); } .miss { color: var(--upstream); } .stale { color: #975a16; }
  .cols { display: grid; grid-template-columns: 1fr 2fr; gap: 1.5rem; }
  @media (max-width: 800px) { .cols { grid-template-columns: 1fr; } }
  .legend span { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; vertical-align: middle; margin: 0 .25rem 0 .75rem; }
  #error { color: #b91c1c; }
  nav { display: flex; gap: .25rem; margin: .75rem 0 0; border-bottom: 1px solid var(--line); }
  nav a { padding: .4rem .8rem; color: var(--muted); text-decoration: none; border: 1px solid transparent; border-bottom: none; border-radius: 6px 6px 0 0; }
  nav a.active { color: var(--fg); border-color: var(--line); background: #fff; margin-bottom: -1px; font-weight: 600; }
  a { color: #1d4ed8; }
  .crumbs { margin: 1rem 0 .5rem; font-size: .95rem; }
  .crumbs a, .crumbs span { margin-right: .3rem; }
  .badge { display: inline-block; padding: 0 .4rem; border-radius: 999px; font-size: .75rem; border: 1px solid currentColor; white-space: nowrap; }
  .pinned { color: #6b21a8; } .alive { color: var(--cache); } .gone { color: #b91c1c; } .due { color: #b45309; }
  .bar { position: relative; height: .6rem; background: #f3f4f6; border-radius: 4px; margin: .4rem 0 .2rem; overflow: hidden; }
  .bar .fill { position: absolute; left: 0; top: 0; bottom: 0; background: var(--cache); }
  .bar .mark { position: absolute; top: 0; bottom: 0; width: 2px; background: #b45309; }
  .bar .mark.low { background: #6b7280; }
  form.search { display: flex; gap: .5rem; margin: .5rem 0; }
  form.search input { flex: 1; max-width: 24rem; padding: .3rem .5rem; font: inherit; border: 1px solid var(--line); border-radius: 6px; }
  button { font: inherit; padding: .3rem .8rem; border: 1px solid #9ca3af; border-radius: 6px; background: #f9fafb; cursor: pointer; }
  .pager { margin: .6rem 0; display: flex; gap: 1rem; font-size: .9rem; }
  dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; font-size: .9rem; }
  dl.facts dt { color: var(--muted); }
  dl.facts dd { margin: 0; }
  .empty { color: var(--muted); font-style: italic; }
  details summary { cursor: pointer; color: var(--muted); }
  section[hidden] { display: none; }
  td.num, td.nowrap { white-space: nowrap; }
  th.num { text-align: right; }
`;
