// sum: a small JSON API.
//
// POST /sum with a JSON array of numbers answers {"count":N,"sum":S};
// anything that is not such an array gets 400 {"error":"..."}; GET /boom
// writes to stderr and aborts (the host answers 500 and logs the line).
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "respond.h"

// The request body, read whole (NUL-terminated), or NULL if the client went
// away.
static char *read_body(wasi_http_types_borrow_incoming_request_t request, size_t *len) {
  wasi_http_types_own_incoming_body_t body;
  if (!wasi_http_types_method_incoming_request_consume(request, &body)) return NULL;
  wasi_http_types_own_input_stream_t stream;
  if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body),
                                                   &stream)) {
    return NULL;
  }
  char *data = malloc(1);
  *len = 0;
  for (;;) {
    handler_list_u8_t chunk;
    wasi_io_streams_stream_error_t error;
    if (!wasi_io_streams_method_input_stream_blocking_read(
            wasi_io_streams_borrow_input_stream(stream), 65536, &chunk, &error)) {
      if (error.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED) break;
      free(data);
      return NULL;
    }
    data = realloc(data, *len + chunk.len + 1);
    memcpy(data + *len, chunk.ptr, chunk.len);
    *len += chunk.len;
    handler_list_u8_free(&chunk);
  }
  data[*len] = '\0';
  wasi_io_streams_input_stream_drop_own(stream);
  wasi_http_types_incoming_body_drop_own(body);
  return data;
}

static const char *skip_space(const char *p) {
  while (isspace((unsigned char)*p)) p++;
  return p;
}

// Parses a JSON array of numbers; false if `text` is not one.
static bool total(const char *text, long *count, double *sum) {
  const char *p = skip_space(text);
  if (*p++ != '[') return false;
  *count = 0;
  *sum = 0;
  p = skip_space(p);
  if (*p == ']') return *skip_space(p + 1) == '\0';
  for (;;) {
    // JSON numbers only: strtod would also take "inf", "nan" and hex.
    const char *digits = *p == '-' ? p + 1 : p;
    if (!isdigit((unsigned char)*digits)) return false;
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) return false;
    char *end;
    double value = strtod(p, &end);
    if (end == p) return false;
    if (!isfinite(value)) return false;
    *sum += value;
    (*count)++;
    p = skip_space(end);
    if (*p == ']') return *skip_space(p + 1) == '\0';
    if (*p++ != ',') return false;
    p = skip_space(p);
  }
}

static void json(wasi_http_types_own_response_outparam_t out, uint16_t status, const char *text) {
  respond(out, status, "application/json", (const uint8_t *)text, strlen(text));
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  wasi_http_types_borrow_incoming_request_t borrowed =
      wasi_http_types_borrow_incoming_request(request);
  handler_string_t path = {0};
  bool has_path = wasi_http_types_method_incoming_request_path_with_query(borrowed, &path);
  wasi_http_types_method_t method;
  wasi_http_types_method_incoming_request_method(borrowed, &method);

  if (has_path && path.len == 5 && memcmp(path.ptr, "/boom", 5) == 0) {
    fprintf(stderr, "boom: the handler aborts\n");
    fflush(stderr);
    abort();
  }
  if (has_path && path.len == 4 && memcmp(path.ptr, "/sum", 4) == 0 &&
      method.tag == WASI_HTTP_TYPES_METHOD_POST) {
    size_t len;
    char *body = read_body(borrowed, &len);
    if (body == NULL) return;  // The client went away.
    long count;
    double sum;
    if (strlen(body) != len || !total(body, &count, &sum) || !isfinite(sum)) {
      json(response_out, 400, "{\"error\":\"expected a JSON array of numbers\"}\n");
    } else {
      char answer[128];
      snprintf(answer, sizeof answer, "{\"count\":%ld,\"sum\":%.17g}\n", count, sum);
      json(response_out, 200, answer);
    }
    free(body);
  } else if (method.tag == WASI_HTTP_TYPES_METHOD_GET) {
    json(response_out, 200, "{\"usage\":\"POST /sum [1, 2, 3]\"}\n");
  } else {
    json(response_out, 405, "{\"error\":\"use POST /sum\"}\n");
  }
  if (has_path) handler_string_free(&path);
  wasi_http_types_incoming_request_drop_own(request);
}
