// ESLint for the designer (`npm run lint`, also run by tests/e2e/test_frontend_unit.py): JS and
// typescript-eslint recommended rules, eslint-plugin-react-hooks' full recommended set (rules of
// hooks, exhaustive deps, and the React Compiler checks: no setState in effects, no refs read
// during render, purity...) with exhaustive-deps as an error, and type-aware promise checks (no
// floating or misused promises: every promise is awaited, returned, or handled with .catch).
// Generated files and build output are ignored.
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist', 'generated', 'node_modules', 'e2e', 'bench'] },
  {
    files: ['src/**/*.{ts,tsx}'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended, reactHooks.configs.flat.recommended],
    languageOptions: {
      globals: globals.browser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      'react-hooks/exhaustive-deps': 'error',
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          ignoreVoid: false,
          allowForKnownSafeCalls: [{ from: 'package', name: 'NavigateFunction', package: 'react-router' }],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { attributes: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
);
