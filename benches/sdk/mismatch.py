"""A payload mismatch seen through openai-python and stripe-python, the two
most used retrying SDKs, against the orders example: how many attempts they
send and how long until the caller sees the 409.

    pip install openai stripe
    RETRY_HINTS=false cargo run --example orders &   # then again with true
    python3 benches/sdk/mismatch.py 127.0.0.1:3000
"""
import sys, time, uuid
import httpx2 as httpx, openai, requests, stripe

addr = sys.argv[1]

def with_openai():
    sent = []
    http = httpx.Client(event_hooks={"request": [lambda r: sent.append(r)]})
    client = openai.OpenAI(api_key="x", base_url=f"http://{addr}", max_retries=3, http_client=http)
    key = str(uuid.uuid4())
    client.post("/orders", body={"sku": "tea"}, cast_to=httpx.Response,
                options={"headers": {"Idempotency-Key": key}})
    sent.clear()
    started = time.monotonic()
    try:
        client.post("/orders", body={"sku": "coffee"}, cast_to=httpx.Response,
                    options={"headers": {"Idempotency-Key": key}})
    except openai.APIStatusError as error:
        assert error.status_code == 409, error.status_code
    return len(sent), time.monotonic() - started

def with_stripe():
    sent = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: sent.append(r))
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": f"http://{addr}"},
                                 max_network_retries=3,
                                 http_client=stripe.RequestsClient(session=session))
    key = str(uuid.uuid4())
    try:
        # The orders example wants JSON and Stripe sends a form: a 400, which
        # is recorded all the same, under this key and this body.
        client.raw_request("post", "/orders", sku="tea", idempotency_key=key)
    except stripe.StripeError:
        pass
    sent.clear()
    started = time.monotonic()
    try:
        client.raw_request("post", "/orders", sku="coffee", idempotency_key=key)
    except stripe.StripeError as error:
        assert error.http_status == 409, error.http_status
    return len(sent), time.monotonic() - started

for name, run in [("openai-python " + openai.__version__, with_openai),
                  ("stripe-python " + stripe._version.VERSION, with_stripe)]:
    attempts, seconds = run()
    print(f"{name}: {attempts} attempts, {seconds:.2f} s until the caller saw the 409")
