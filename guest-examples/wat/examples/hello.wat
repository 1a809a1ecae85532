  ;; hello: answers every request with 200 "hello from wat".
  (data (i32.const 2048) "hello from wat\n")

  (func (export "wasi:http/incoming-handler@0.2.12#handle") (param $request i32) (param $outparam i32)
    (global.set $outparam (local.get $outparam))
    (call $respond (i32.const 200) (i32.const 2048) (i32.const 15)))
