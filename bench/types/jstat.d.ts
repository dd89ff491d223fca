/** The one part of jstat (no types of its own) that the bench uses. */
declare module 'jstat' {
  const jstat: {
    studentt: {
      /** The p-quantile of Student's t distribution with `dof` degrees of freedom. */
      inv(p: number, dof: number): number;
    };
  };
  export default jstat;
}
