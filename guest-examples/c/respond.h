// What both C examples share: sending a whole response with the bindings
// wit-bindgen generates for the catshost:guest/handler world (handler.h).
#ifndef RESPOND_H
#define RESPOND_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "handler.h"

// Sends `status` with `content_type` and the `len` bytes at `body`.
static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status,
                    const char *content_type, const uint8_t *body, size_t len) {
  wasi_http_types_tuple2_field_name_field_value_t header = {
      .f0 = {.ptr = (uint8_t *)"content-type", .len = strlen("content-type")},
      .f1 = {.ptr = (uint8_t *)content_type, .len = strlen(content_type)},
  };
  wasi_http_types_list_tuple2_field_name_field_value_t headers = {.ptr = &header, .len = 1};
  wasi_http_types_own_fields_t fields;
  wasi_http_types_header_error_t header_error;
  if (!wasi_http_types_static_fields_from_list(&headers, &fields, &header_error)) {
    __builtin_trap();
  }
  wasi_http_types_own_outgoing_response_t response =
      wasi_http_types_constructor_outgoing_response(fields);
  wasi_http_types_borrow_outgoing_response_t borrowed =
      wasi_http_types_borrow_outgoing_response(response);
  wasi_http_types_method_outgoing_response_set_status_code(borrowed, status);
  wasi_http_types_own_outgoing_body_t outgoing;
  if (!wasi_http_types_method_outgoing_response_body(borrowed, &outgoing)) {
    __builtin_trap();
  }
  wasi_http_types_result_own_outgoing_response_error_code_t result = {
      .is_err = false, .val = {.ok = response}};
  wasi_http_types_static_response_outparam_set(out, &result);

  wasi_http_types_own_output_stream_t stream;
  if (!wasi_http_types_method_outgoing_body_write(
          wasi_http_types_borrow_outgoing_body(outgoing), &stream)) {
    __builtin_trap();
  }
  // blocking-write-and-flush takes at most 4096 bytes at a time.
  wasi_io_streams_stream_error_t error;
  while (len > 0) {
    size_t n = len < 4096 ? len : 4096;
    handler_list_u8_t chunk = {.ptr = (uint8_t *)body, .len = n};
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
            wasi_io_streams_borrow_output_stream(stream), &chunk, &error)) {
      break;  // The client went away.
    }
    body += n;
    len -= n;
  }
  wasi_io_streams_output_stream_drop_own(stream);
  wasi_http_types_error_code_t finish_error;
  wasi_http_types_static_outgoing_body_finish(outgoing, NULL, &finish_error);
}

#endif
