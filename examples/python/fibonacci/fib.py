"""Fibonacci: returns the params["n"]-th Fibonacci number (F(0) = 0, F(1) = 1).

The number is returned as a string, since it soon exceeds what JSON
numbers hold exactly.

Create:  serverledge-cli create -f fib --runtime python --handler fib.handler --src examples/python/fibonacci
Invoke:  serverledge-cli invoke -f fib -p n:90
"""

MAX_N = 10000


def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def handler(params, context):
    n = int(params.get("n", 10))
    if n < 0 or n > MAX_N:
        raise ValueError(f"n must be between 0 and {MAX_N}, got {n}")
    return {"n": n, "Fibonacci": str(fibonacci(n))}
