"""Hello: greets params["name"] (default "world").

Create:  serverledge-cli create -f hello --runtime python --handler hello.handler --src examples/python/hello
Invoke:  serverledge-cli invoke -f hello -p name:Ada
"""


def handler(params, context):
    name = params.get("name", "world")
    print(f"greeting {name}")  # captured when invoked with -o/--return_output
    return f"Hello, {name}!"
