// fetch: calls another HTTP server (wasi:http/outgoing-handler).
//
// GET .../fetch?url=http://HOST[:PORT]/PATH (under any prefix, as routes
// hand the guest the original path) sends GET to that URL and answers
// 200 "upstream STATUS: BODY"; when the request cannot be sent (catshost
// denies origins a tenant's `outbound` list does not allow) it answers 502
// "error: CODE", CODE being the wasi:http error code. Anything else: 404.
#include <stdio.h>
#include <stdlib.h>

#include "respond.h"

static void text(wasi_http_types_own_response_outparam_t out, uint16_t status, const char *body) {
  respond(out, status, "text/plain; charset=utf-8", (const uint8_t *)body, strlen(body));
}

static const char *error_name(const wasi_http_types_error_code_t *code) {
  switch (code->tag) {
    case WASI_HTTP_TYPES_ERROR_CODE_DNS_ERROR: return "DNS-error";
    case WASI_HTTP_TYPES_ERROR_CODE_DESTINATION_NOT_FOUND: return "destination-not-found";
    case WASI_HTTP_TYPES_ERROR_CODE_DESTINATION_IP_PROHIBITED: return "destination-IP-prohibited";
    case WASI_HTTP_TYPES_ERROR_CODE_CONNECTION_REFUSED: return "connection-refused";
    case WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED: return "HTTP-request-denied";
    case WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_URI_INVALID: return "HTTP-request-URI-invalid";
    default: return "other";
  }
}

static void fail(wasi_http_types_own_response_outparam_t out, const wasi_http_types_error_code_t *code) {
  char body[64];
  snprintf(body, sizeof body, "error: %s\n", error_name(code));
  text(out, 502, body);
}

static handler_string_t str(const char *p, size_t len) {
  return (handler_string_t){.ptr = (uint8_t *)p, .len = len};
}

// Sends GET `url` and answers with what came back.
static void fetch(const char *url, wasi_http_types_own_response_outparam_t out) {
  wasi_http_types_scheme_t scheme;
  const char *rest;
  if (strncmp(url, "http://", 7) == 0) {
    scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTP;
    rest = url + 7;
  } else if (strncmp(url, "https://", 8) == 0) {
    scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
    rest = url + 8;
  } else {
    text(out, 400, "the url must start with http:// or https://\n");
    return;
  }
  const char *slash = strchr(rest, '/');
  size_t authority_len = slash ? (size_t)(slash - rest) : strlen(rest);
  const char *path = slash ? slash : "/";

  wasi_http_types_own_outgoing_request_t request =
      wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
  wasi_http_types_borrow_outgoing_request_t borrowed =
      wasi_http_types_borrow_outgoing_request(request);
  wasi_http_types_method_t method = {.tag = WASI_HTTP_TYPES_METHOD_GET};
  handler_string_t authority = str(rest, authority_len);
  handler_string_t path_with_query = str(path, strlen(path));
  if (!wasi_http_types_method_outgoing_request_set_method(borrowed, &method) ||
      !wasi_http_types_method_outgoing_request_set_scheme(borrowed, &scheme) ||
      !wasi_http_types_method_outgoing_request_set_authority(borrowed, &authority) ||
      !wasi_http_types_method_outgoing_request_set_path_with_query(borrowed, &path_with_query)) {
    text(out, 400, "the url is not valid\n");
    return;
  }

  wasi_http_outgoing_handler_own_future_incoming_response_t future;
  wasi_http_outgoing_handler_error_code_t error;
  if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &error)) {
    fail(out, &error);
    return;
  }
  wasi_http_types_borrow_future_incoming_response_t borrowed_future =
      wasi_http_types_borrow_future_incoming_response(future);
  wasi_http_types_own_pollable_t ready =
      wasi_http_types_method_future_incoming_response_subscribe(borrowed_future);
  wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
  wasi_io_poll_pollable_drop_own(ready);
  wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
  if (!wasi_http_types_method_future_incoming_response_get(borrowed_future, &got) || got.is_err) {
    text(out, 500, "the response was not ready\n");
    return;
  }
  wasi_http_types_future_incoming_response_drop_own(future);
  if (got.val.ok.is_err) {
    fail(out, &got.val.ok.val.err);
    return;
  }
  wasi_http_types_own_incoming_response_t response = got.val.ok.val.ok;
  wasi_http_types_borrow_incoming_response_t borrowed_response =
      wasi_http_types_borrow_incoming_response(response);
  unsigned status = wasi_http_types_method_incoming_response_status(borrowed_response);

  // Read the upstream body whole (a test-sized one).
  char *body = malloc(64);
  size_t len = (size_t)snprintf(body, 64, "upstream %u: ", status);
  wasi_http_types_own_incoming_body_t incoming;
  wasi_http_types_own_input_stream_t stream;
  if (wasi_http_types_method_incoming_response_consume(borrowed_response, &incoming) &&
      wasi_http_types_method_incoming_body_stream(
          wasi_http_types_borrow_incoming_body(incoming), &stream)) {
    for (;;) {
      handler_list_u8_t chunk;
      wasi_io_streams_stream_error_t read_error;
      if (!wasi_io_streams_method_input_stream_blocking_read(
              wasi_io_streams_borrow_input_stream(stream), 65536, &chunk, &read_error)) {
        break;
      }
      body = realloc(body, len + chunk.len);
      memcpy(body + len, chunk.ptr, chunk.len);
      len += chunk.len;
      handler_list_u8_free(&chunk);
    }
    wasi_io_streams_input_stream_drop_own(stream);
    wasi_http_types_incoming_body_drop_own(incoming);
  }
  wasi_http_types_incoming_response_drop_own(response);
  respond(out, 200, "text/plain; charset=utf-8", (const uint8_t *)body, len);
  free(body);
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  handler_string_t target;
  char url[2048] = "";
  bool is_fetch = false;
  if (wasi_http_types_method_incoming_request_path_with_query(
          wasi_http_types_borrow_incoming_request(request), &target)) {
    static const char marker[] = "/fetch?url=";
    size_t n = sizeof marker - 1;
    for (size_t i = 0; i + n <= target.len; i++) {
      if (memcmp(target.ptr + i, marker, n) == 0) {
        size_t len = target.len - i - n;
        if (len < sizeof url) {
          memcpy(url, target.ptr + i + n, len);
          is_fetch = true;
        }
        break;
      }
    }
    handler_string_free(&target);
  }
  wasi_http_types_incoming_request_drop_own(request);
  if (is_fetch) {
    fetch(url, response_out);
  } else {
    text(response_out, 404, "try /fetch?url=http://HOST:PORT/PATH\n");
  }
}
