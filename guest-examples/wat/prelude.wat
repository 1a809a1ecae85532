  ;; The prelude of every WAT guest in this project (see src/lib.rs): the
  ;; imports of the catshost:guest/handler world that the guests use, their
  ;; memory, an allocator, and helpers to answer a request.
  ;;
  ;; The core signatures follow the canonical ABI with legacy name mangling;
  ;; `cargo run -p catshost-wat --bin wat-signatures` prints every one.
  ;; Memory: 16..128 holds return areas, 1024..65536 static data, the heap
  ;; starts at 65536.

  (import "wasi:http/types@0.2.12" "[constructor]fields" (func $fields_new (result i32)))
  (import "wasi:http/types@0.2.12" "[method]fields.append" (func $fields_append (param i32 i32 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]fields.get" (func $fields_get (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[resource-drop]fields" (func $fields_drop (param i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-request.method" (func $request_method (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-request.path-with-query" (func $request_path (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-request.scheme" (func $request_scheme (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-request.authority" (func $request_authority (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-request.headers" (func $request_headers (param i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-request.consume" (func $request_consume (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[resource-drop]incoming-request" (func $request_drop (param i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-body.stream" (func $incoming_body_stream (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[resource-drop]incoming-body" (func $incoming_body_drop (param i32)))
  (import "wasi:http/types@0.2.12" "[constructor]outgoing-response" (func $response_new (param i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-response.set-status-code" (func $response_set_status (param i32 i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-response.body" (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-body.write" (func $outgoing_body_write (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[static]outgoing-body.finish" (func $outgoing_body_finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[static]response-outparam.set" (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]input-stream.blocking-read" (func $input_blocking_read (param i32 i64 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]input-stream" (func $input_drop (param i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush" (func $output_write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.check-write" (func $output_check_write (param i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.write" (func $output_write_now (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]output-stream" (func $output_drop (param i32)))
  (import "wasi:io/poll@0.2.12" "[method]pollable.block" (func $pollable_block (param i32)))
  (import "wasi:io/poll@0.2.12" "[resource-drop]pollable" (func $pollable_drop (param i32)))
  (import "wasi:clocks/monotonic-clock@0.2.12" "subscribe-duration" (func $subscribe_duration (param i64) (result i32)))
  (import "wasi:cli/stdout@0.2.12" "get-stdout" (func $get_stdout (result i32)))
  (import "wasi:cli/stderr@0.2.12" "get-stderr" (func $get_stderr (result i32)))

  (memory (export "memory") 2)

  ;; Return areas for imports that return through memory.
  (global $RET i32 (i32.const 16))
  (global $RET2 i32 (i32.const 64))
  ;; The bump allocator's next free byte.
  (global $heap (mut i32) (i32.const 65536))
  ;; The response being written: its outparam and its body.
  (global $outparam (mut i32) (i32.const 0))
  (global $body (mut i32) (i32.const 0))

  (data (i32.const 1024) "content-type")          ;; 12 bytes
  (data (i32.const 1040) "text/plain; charset=utf-8") ;; 25 bytes

  ;; A bump allocator: memory is never freed, the instance lives for one
  ;; request. Guests that stream reset $heap between chunks.
  (func $cabi_realloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add
                    (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                    (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then unreachable))))
    (if (local.get $old)
      (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old_size))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func $alloc (param $size i32) (result i32)
    (call $cabi_realloc (i32.const 0) (i32.const 0) (i32.const 8) (local.get $size)))

  ;; Whether two byte strings are equal.
  (func $bytes_eq (param $a i32) (param $a_len i32) (param $b i32) (param $b_len i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $a_len) (local.get $b_len)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $a_len)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; The request's path with query, as (ptr, len); "/" when it has none.
  (func $path (param $request i32) (result i32 i32)
    (call $request_path (local.get $request) (global.get $RET))
    (if (result i32 i32) (i32.load8_u (global.get $RET))
      (then (i32.load (i32.add (global.get $RET) (i32.const 4)))
            (i32.load (i32.add (global.get $RET) (i32.const 8))))
      (else (i32.const 1072) (i32.const 1))))
  (data (i32.const 1072) "/")

  ;; Sends the response head (status, a content-type) through $outparam and
  ;; returns the body's output stream. The body is kept in $body.
  (func $respond_start (param $status i32) (param $type i32) (param $type_len i32) (result i32)
    (local $fields i32) (local $response i32)
    (local.set $fields (call $fields_new))
    (call $fields_append (local.get $fields)
      (i32.const 1024) (i32.const 12) (local.get $type) (local.get $type_len) (global.get $RET))
    (if (i32.load8_u (global.get $RET)) (then unreachable))
    (local.set $response (call $response_new (local.get $fields)))
    (if (call $response_set_status (local.get $response) (local.get $status)) (then unreachable))
    (call $response_body (local.get $response) (global.get $RET))
    (if (i32.load8_u (global.get $RET)) (then unreachable))
    (global.set $body (i32.load (i32.add (global.get $RET) (i32.const 4))))
    (call $outgoing_body_write (global.get $body) (global.get $RET))
    (if (i32.load8_u (global.get $RET)) (then unreachable))
    (call $outparam_set (global.get $outparam)
      (i32.const 0) (local.get $response) (i32.const 0) (i64.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (i32.load (i32.add (global.get $RET) (i32.const 4))))

  ;; Writes all of `len` bytes at `ptr` to `stream`, 4096 at a time (the most
  ;; blocking-write-and-flush takes). Returns 0 if the stream failed (the
  ;; client went away), 1 otherwise.
  (func $write (param $stream i32) (param $ptr i32) (param $len i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $n (select (i32.const 4096) (local.get $len)
                              (i32.gt_u (local.get $len) (i32.const 4096))))
        (call $output_write (local.get $stream) (local.get $ptr) (local.get $n) (global.get $RET2))
        (if (i32.load8_u (global.get $RET2)) (then (return (i32.const 0))))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $n)))
        (local.set $len (i32.sub (local.get $len) (local.get $n)))
        (br $next)))
    (i32.const 1))

  ;; Closes the body stream and finishes the body (no trailers).
  (func $respond_end (param $stream i32)
    (call $output_drop (local.get $stream))
    (call $outgoing_body_finish (global.get $body) (i32.const 0) (i32.const 0) (global.get $RET)))

  ;; A whole text/plain response.
  (func $respond (param $status i32) (param $ptr i32) (param $len i32)
    (local $stream i32)
    (local.set $stream (call $respond_start (local.get $status) (i32.const 1040) (i32.const 25)))
    (drop (call $write (local.get $stream) (local.get $ptr) (local.get $len)))
    (call $respond_end (local.get $stream)))

  ;; Sleeps for `ns` nanoseconds on the monotonic clock.
  (func $sleep (param $ns i64)
    (local $pollable i32)
    (local.set $pollable (call $subscribe_duration (local.get $ns)))
    (call $pollable_block (local.get $pollable))
    (call $pollable_drop (local.get $pollable)))
