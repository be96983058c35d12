//! `tiny-http-probe SOCKET THREADS`: tiny_http 0.12 on a Unix socket, answering the bench's API
//! requests without touching storage: `GET /healthz` 200, `POST /v1/messages` 202 with a
//! uuid-sized JSON body after reading the request body. THREADS threads call `recv()`.

use std::sync::Arc;

fn main() {
    let mut args = std::env::args().skip(1);
    let socket = args.next().expect("usage: tiny-http-probe SOCKET THREADS");
    let threads: usize = args.next().map_or(2, |t| t.parse().expect("THREADS"));
    let _ = std::fs::remove_file(&socket);
    let server = Arc::new(tiny_http::Server::http_unix(socket.as_ref()).expect("bind"));
    let json = tiny_http::Header::from_bytes("content-type", "application/json").unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (server, json) = (server.clone(), json.clone());
            std::thread::spawn(move || {
                let mut body = Vec::new();
                while let Ok(mut req) = server.recv() {
                    body.clear();
                    let _ = req.as_reader().read_to_end(&mut body);
                    let resp = if req.url() == "/healthz" {
                        tiny_http::Response::from_string("ok\n")
                    } else {
                        tiny_http::Response::from_string(
                            "{\"uuid\":\"019a0000-0000-7000-8000-000000000000\",\"state\":\"scheduled\",\"created\":true}",
                        )
                        .with_status_code(202)
                        .with_header(json.clone())
                    };
                    let _ = req.respond(resp);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
