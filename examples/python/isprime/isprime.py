"""IsPrime: tells whether params["n"] is a prime number.

Create:  serverledge-cli create -f isprime --runtime python --handler isprime.handler --src examples/python/isprime
Invoke:  serverledge-cli invoke -f isprime -p n:17
"""


def is_prime(n):
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def handler(params, context):
    n = int(params["n"])
    return {"IsPrime": is_prime(n)}
