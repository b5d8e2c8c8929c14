// @ts-check
// Lint with the type checker's help: in a server, a promise nobody awaits or catches
// (no-floating-promises) and an async function handed to a callback that ignores its
// promise (no-misused-promises: event handlers, Express middleware) are the faults that
// crash the process or hang a request, and only type information can find them.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'spec/bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // An async implementation of an async interface (an in-memory cache beside the Redis one)
      // need not await: `async` still turns its throws into rejections, which is the point.
      '@typescript-eslint/require-await': 'off',
      // Express knows an error handler by its four parameters; `_` marks the ones kept for that.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Input checks match control bytes on purpose (log escaping, header and name grammar).
      'no-control-regex': 'off',
    },
  },
  {
    // Tests read JSON answers of real servers as `any` on purpose (the assertion is the check);
    // the promise rules stay. node:test's test()/describe() return promises the runner awaits.
    files: ['spec/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }],
      }],
    },
  },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
);
