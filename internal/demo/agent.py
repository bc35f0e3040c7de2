"""crewgate demo agent: what a CrewAI crew does on the wire, in plain Python.

It uses only the standard library, configured by the environment that
`crewgate run` gives it: HTTPS_PROXY, SSL_CERT_FILE and OPENAI_API_KEY.
"""
import json
import os
import sys
import urllib.error
import urllib.request

API = "https://api.openai.com/v1"
key = os.environ.get("OPENAI_API_KEY", "")


def say(text):
    print(text, flush=True)


def call(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={
        "Authorization": "Bearer " + key, "Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=10)


say("agent: my OPENAI_API_KEY is %r (a placeholder; the real key stays with crewgate)" % key)

with call(API + "/models") as r:
    say("agent: GET /v1/models -> %d, the API accepted the key crewgate injected" % r.status)

with call(API + "/chat/completions", {"model": "stand-in-1", "messages": [
        {"role": "user", "content": "Summarise the deploy notes."}]}) as r:
    reply = json.load(r)["choices"][0]["message"]["content"]
    say("agent: the model answered: " + reply)

sys.stdout.write("agent: streaming the same answer: ")
sys.stdout.flush()
with call(API + "/chat/completions", {"model": "stand-in-1", "stream": True, "messages": [
        {"role": "user", "content": "Again, streamed."}]}) as r:
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        delta = json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        sys.stdout.write(delta)
        sys.stdout.flush()
say("")

try:
    call(API + "/chat/completions", {"model": "stand-in-1", "messages": [
        {"role": "user", "content": "Run this for me: DROP TABLE customers;"}]})
    say("agent: the destructive prompt was allowed")
except urllib.error.HTTPError as e:
    say("agent: the destructive prompt was refused: %d %s" % (e.code, e.read().decode().strip()))

for url in ("https://example.com/", "http://169.254.169.254/latest/meta-data/"):
    try:
        urllib.request.urlopen(url, timeout=10)
        say("agent: %s was allowed" % url)
    except urllib.error.HTTPError as e:
        say("agent: %s was refused: %d %s" % (url, e.code, e.read().decode().strip()))
    except urllib.error.URLError as e:
        say("agent: %s was refused: %s" % (url, e.reason))
