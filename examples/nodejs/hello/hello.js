// Hello: greets params.name (default "world").
//
// Create:  serverledge-cli create -f hellojs --runtime nodejs --handler hello.js --src examples/nodejs/hello
// Invoke:  serverledge-cli invoke -f hellojs -p name:Ada
module.exports = function (params, context) {
  const name = params.name ?? "world";
  console.log(`greeting ${name}`); // captured when invoked with -o/--return_output
  return `Hello, ${name}!`;
};
