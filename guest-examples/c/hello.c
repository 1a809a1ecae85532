// hello: answers every request with 200 "hello from c".
#include "respond.h"

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  static const char body[] = "hello from c\n";
  wasi_http_types_incoming_request_drop_own(request);
  respond(response_out, 200, "text/plain; charset=utf-8", (const uint8_t *)body,
          sizeof body - 1);
}
