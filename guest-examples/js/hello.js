// hello: answers every request with 200 "hello from javascript".
addEventListener('fetch', (event) =>
  event.respondWith(
    new Response('hello from javascript\n', {
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    }),
  ),
);
