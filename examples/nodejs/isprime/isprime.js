// IsPrime: tells whether params.n is a prime number.
//
// Create:  serverledge-cli create -f isprimejs --runtime nodejs --handler isprime.js --src examples/nodejs/isprime
// Invoke:  serverledge-cli invoke -f isprimejs -p n:17
function isPrime(n) {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let i = 3; i * i <= n; i += 2) {
    if (n % i === 0) return false;
  }
  return true;
}

module.exports = function (params, context) {
  const n = Number(params.n);
  if (!Number.isSafeInteger(n)) {
    throw new Error(`n must be an integer, got ${JSON.stringify(params.n)}`);
  }
  return { IsPrime: isPrime(n) };
};
