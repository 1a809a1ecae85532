// sum: a small JSON API.
//
// POST /sum with a JSON array of numbers answers {"count": N, "sum": S};
// anything that is not such an array gets 400 {"error": "..."}; GET /boom
// throws (the host answers 500 and logs the error).

function json(status, value) {
  return new Response(JSON.stringify(value) + '\n', {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

function total(numbers) {
  if (!Array.isArray(numbers) || !numbers.every((n) => Number.isFinite(n))) {
    throw new TypeError('expected a JSON array of finite numbers');
  }
  const sum = numbers.reduce((a, b) => a + b, 0);
  if (!Number.isFinite(sum)) {
    throw new TypeError('the sum is too large');
  }
  return { count: numbers.length, sum };
}

async function handle(request) {
  const { pathname } = new URL(request.url);
  if (pathname === '/boom') {
    throw new Error('boom: an error the handler does not catch');
  }
  if (pathname === '/sum' && request.method === 'POST') {
    let answer;
    try {
      answer = total(JSON.parse(await request.text()));
    } catch (error) {
      return json(400, { error: error.message });
    }
    return json(200, answer);
  }
  if (request.method === 'GET') {
    return json(200, { usage: 'POST /sum [1, 2, 3]' });
  }
  return json(405, { error: 'use POST /sum' });
}

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));
