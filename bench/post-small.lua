-- wrk script: POST a 16-byte body (the echo rows of bench/reuse.sh).
wrk.method = "POST"
wrk.body = "hello, echo me!\n"
wrk.headers["Content-Type"] = "text/plain"
