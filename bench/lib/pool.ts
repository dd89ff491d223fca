/** Runs `task(0..count-1)` with at most `concurrency` in flight; collects results and failures. */
export async function runPool<T>(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<T>,
): Promise<{ ok: T[]; errors: string[] }> {
  const ok: T[] = [];
  const errors: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        ok.push(await task(i));
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { ok, errors };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
