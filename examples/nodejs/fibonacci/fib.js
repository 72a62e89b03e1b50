// Fibonacci: returns the params.n-th Fibonacci number (F(0) = 0, F(1) = 1).
// An async handler: the runtime awaits the Promise it returns. The number is
// returned as a string, since it soon exceeds what JSON numbers hold exactly.
//
// Create:  serverledge-cli create -f fibjs --runtime nodejs --handler fib.js --src examples/nodejs/fibonacci
// Invoke:  serverledge-cli invoke -f fibjs -p n:90
const MAX_N = 10000;

function fibonacci(n) {
  let a = 0n;
  let b = 1n;
  for (let i = 0; i < n; i++) {
    [a, b] = [b, a + b];
  }
  return a;
}

module.exports = async function (params, context) {
  const n = params.n === undefined ? 10 : Number(params.n);
  if (!Number.isInteger(n) || n < 0 || n > MAX_N) {
    throw new Error(`n must be an integer between 0 and ${MAX_N}, got ${JSON.stringify(params.n)}`);
  }
  return { n, Fibonacci: fibonacci(n).toString() };
};
