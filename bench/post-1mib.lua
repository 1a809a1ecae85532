-- wrk script: POST a 1 MiB body (the echo benchmark).
wrk.method = "POST"
wrk.body = string.rep("a", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
