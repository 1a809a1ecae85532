  ;; upper: streams the request body back in upper case (ASCII), 64 KiB at
  ;; a time, never holding more than one chunk: POST a file of any size.
  (data (i32.const 2048) "text/plain; charset=utf-8") ;; 25 bytes

  (func (export "wasi:http/incoming-handler@0.2.12#handle") (param $request i32) (param $outparam i32)
    (local $body i32) (local $input i32) (local $output i32)
    (local $ptr i32) (local $len i32) (local $i i32) (local $c i32)
    (global.set $outparam (local.get $outparam))
    (call $request_consume (local.get $request) (global.get $RET))
    (if (i32.load8_u (global.get $RET)) (then unreachable))
    (local.set $body (i32.load (i32.add (global.get $RET) (i32.const 4))))
    (call $incoming_body_stream (local.get $body) (global.get $RET))
    (if (i32.load8_u (global.get $RET)) (then unreachable))
    (local.set $input (i32.load (i32.add (global.get $RET) (i32.const 4))))
    (local.set $output (call $respond_start (i32.const 200) (i32.const 2048) (i32.const 25)))
    (block $done
      (loop $next
        (global.set $heap (i32.const 65536))
        (call $input_blocking_read (local.get $input) (i64.const 65536) (global.get $RET))
        ;; An error here is the end of the body (or the client going away).
        (br_if $done (i32.load8_u (global.get $RET)))
        (local.set $ptr (i32.load (i32.add (global.get $RET) (i32.const 4))))
        (local.set $len (i32.load (i32.add (global.get $RET) (i32.const 8))))
        ;; a..z -> A..Z, in place.
        (local.set $i (i32.const 0))
        (block $converted
          (loop $byte
            (br_if $converted (i32.ge_u (local.get $i) (local.get $len)))
            (local.set $c (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
            (if (i32.lt_u (i32.sub (local.get $c) (i32.const 97)) (i32.const 26))
              (then (i32.store8 (i32.add (local.get $ptr) (local.get $i))
                                (i32.sub (local.get $c) (i32.const 32)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $byte)))
        (br_if $done (i32.eqz (call $write (local.get $output) (local.get $ptr) (local.get $len))))
        (br $next)))
    (call $input_drop (local.get $input))
    (call $incoming_body_drop (local.get $body))
    (call $respond_end (local.get $output)))
