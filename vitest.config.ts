import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration and e2e suites start real servers on port 0; two cores is all we have.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
