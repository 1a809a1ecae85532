  ;; The built-in demo of `catshost serve` with no component: answers every
  ;; request with the method, path, protocol, scheme and authority it saw, as
  ;; text.
  ;;
  ;; Written against the WAT guest prelude (guest-examples/wat/prelude.wat)
  ;; and built into a component by host/build.rs.

  (data (i32.const 2048) "GETHEADPOSTPUTDELETECONNECTOPTIONSTRACEPATCH")
  ;; (offset, length) of each method name above, in `method` variant order.
  (data (i32.const 2112)
    "\00\08\00\00\03\00\00\00" "\03\08\00\00\04\00\00\00" "\07\08\00\00\04\00\00\00"
    "\0b\08\00\00\03\00\00\00" "\0e\08\00\00\06\00\00\00" "\14\08\00\00\07\00\00\00"
    "\1b\08\00\00\07\00\00\00" "\22\08\00\00\05\00\00\00" "\27\08\00\00\05\00\00\00")
  (data (i32.const 2304) "catshost demo\nmethod: ")   ;; 22 bytes
  (data (i32.const 2336) "\npath: ")                  ;; 7 bytes
  (data (i32.const 2352) "\nprotocol: ")              ;; 11 bytes
  (data (i32.const 2368) "via")                       ;; 3 bytes
  (data (i32.const 2376) "unknown")                   ;; 7 bytes
  (data (i32.const 2384) "\nscheme: ")                ;; 9 bytes
  (data (i32.const 2400) "\nauthority: ")             ;; 12 bytes
  (data (i32.const 2416) "httphttps")                 ;; 4 + 5 bytes

  ;; Where the body is being assembled.
  (global $cursor (mut i32) (i32.const 0))

  (func $put (param $ptr i32) (param $len i32)
    (memory.copy (global.get $cursor) (local.get $ptr) (local.get $len))
    (global.set $cursor (i32.add (global.get $cursor) (local.get $len))))

  (func (export "wasi:http/incoming-handler@0.2.12#handle") (param $request i32) (param $outparam i32)
    (local $method i32) (local $method_len i32)
    (local $path i32) (local $path_len i32)
    (local $proto i32) (local $proto_len i32)
    (local $headers i32) (local $values i32) (local $count i32) (local $i i32)
    (local $body i32) (local $stream i32)
    (local $scheme i32) (local $scheme_len i32) (local $authority i32) (local $authority_len i32)
    (global.set $outparam (local.get $outparam))

    ;; The method: a known one from the table, or `other(string)`.
    (call $request_method (local.get $request) (global.get $RET))
    (local.set $i (i32.load8_u (global.get $RET)))
    (if (i32.lt_u (local.get $i) (i32.const 9))
      (then
        (local.set $method (i32.load (i32.add (i32.const 2112) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $method_len (i32.load (i32.add (i32.const 2116) (i32.shl (local.get $i) (i32.const 3))))))
      (else
        (local.set $method (i32.load (i32.add (global.get $RET) (i32.const 4))))
        (local.set $method_len (i32.load (i32.add (global.get $RET) (i32.const 8))))))

    (call $path (local.get $request))
    (local.set $path_len)
    (local.set $path)

    ;; The protocol: the host's own `via` entry is the last one; its first
    ;; word is the protocol the request came in by.
    (local.set $proto (i32.const 2376))
    (local.set $proto_len (i32.const 7))
    (local.set $headers (call $request_headers (local.get $request)))
    (call $fields_get (local.get $headers) (i32.const 2368) (i32.const 3) (global.get $RET))
    (local.set $values (i32.load (global.get $RET)))
    (local.set $count (i32.load (i32.add (global.get $RET) (i32.const 4))))
    (if (local.get $count)
      (then
        (local.set $values (i32.add (local.get $values) (i32.shl (i32.sub (local.get $count) (i32.const 1)) (i32.const 3))))
        (local.set $proto (i32.load (local.get $values)))
        (local.set $proto_len (i32.load (i32.add (local.get $values) (i32.const 4))))
        (local.set $i (i32.const 0))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $i) (local.get $proto_len)))
            (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $proto) (local.get $i))) (i32.const 32)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (local.set $proto_len (local.get $i))))
    (call $fields_drop (local.get $headers))

    ;; The scheme: HTTP, HTTPS or other(string), and the authority.
    (local.set $scheme (i32.const 2376))
    (local.set $scheme_len (i32.const 7))
    (call $request_scheme (local.get $request) (global.get $RET))
    (if (i32.load8_u (global.get $RET))
      (then
        (local.set $i (i32.load8_u (i32.add (global.get $RET) (i32.const 4))))
        (if (i32.eqz (local.get $i))
          (then (local.set $scheme (i32.const 2416)) (local.set $scheme_len (i32.const 4))))
        (if (i32.eq (local.get $i) (i32.const 1))
          (then (local.set $scheme (i32.const 2420)) (local.set $scheme_len (i32.const 5))))
        (if (i32.eq (local.get $i) (i32.const 2))
          (then
            (local.set $scheme (i32.load (i32.add (global.get $RET) (i32.const 8))))
            (local.set $scheme_len (i32.load (i32.add (global.get $RET) (i32.const 12))))))))
    (local.set $authority (i32.const 2376))
    (local.set $authority_len (i32.const 7))
    (call $request_authority (local.get $request) (global.get $RET))
    (if (i32.load8_u (global.get $RET))
      (then
        (local.set $authority (i32.load (i32.add (global.get $RET) (i32.const 4))))
        (local.set $authority_len (i32.load (i32.add (global.get $RET) (i32.const 8))))))

    (local.set $body (call $alloc (i32.add (i32.const 96)
      (i32.add (i32.add (local.get $method_len) (i32.add (local.get $path_len) (local.get $proto_len)))
               (i32.add (local.get $scheme_len) (local.get $authority_len))))))
    (global.set $cursor (local.get $body))
    (call $put (i32.const 2304) (i32.const 22))
    (call $put (local.get $method) (local.get $method_len))
    (call $put (i32.const 2336) (i32.const 7))
    (call $put (local.get $path) (local.get $path_len))
    (call $put (i32.const 2352) (i32.const 11))
    (call $put (local.get $proto) (local.get $proto_len))
    (call $put (i32.const 2384) (i32.const 9))
    (call $put (local.get $scheme) (local.get $scheme_len))
    (call $put (i32.const 2400) (i32.const 12))
    (call $put (local.get $authority) (local.get $authority_len))
    (call $put (i32.const 2336) (i32.const 1))

    (call $respond (i32.const 200) (local.get $body) (i32.sub (global.get $cursor) (local.get $body))))
