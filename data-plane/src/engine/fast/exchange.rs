//! One attempt of the fast engine: write the request (the client's bytes,
//! or its rebuilt head and body) to a pooled replica connection and read
//! the final response head, forwarding interim (1xx) responses to the
//! client on the way (RFC 9110 §15.2).

use std::sync::Arc;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::{Conn, RawPool};
use super::request::RequestHead;
use super::response::{self, ResponseHead};
use super::{MIN_READ, READ_CHUNK};
use crate::completion::Completion;
use crate::config::{MAX_INTERIM_RESPONSES, MAX_RESPONSE_HEAD_BYTES};
use crate::driver::Exchange;
use crate::error::AttemptError;
use crate::pool::ReplicaPools;

/// A final response head read from an upstream, its connection (holding the
/// head and whatever of the body came with it) and the pool it returns to.
pub(crate) struct Answer {
    pub conn: Conn,
    pub head: ResponseHead,
    pub pool: Arc<RawPool>,
    /// Ends the request when the body has been relayed.
    pub completion: Completion,
}

/// Everything one request's attempts need from its client connection.
pub(crate) struct FastExchange<'c> {
    /// The client, for interim responses.
    pub client: &'c mut TcpStream,
    /// The request as every upstream gets it.
    pub request: &'c [u8],
    pub head: &'c RequestHead,
    /// Reused for rebuilt interim heads.
    pub scratch: &'c mut Vec<u8>,
}

impl Exchange for FastExchange<'_> {
    type Answer = Answer;

    fn status(answer: &Answer) -> u16 {
        answer.head.status
    }

    fn completion(answer: &mut Answer) -> &mut Completion {
        &mut answer.completion
    }

    async fn attempt(&mut self, pools: &ReplicaPools) -> Result<Answer, AttemptError> {
        let pool = &pools.raw;
        loop {
            let mut conn = match pool.checkout() {
                Some(conn) => conn,
                None => pool.connect().await?,
            };
            if let Err(source) = conn.stream.write_all(self.request).await {
                if conn.reused {
                    continue; // closed while idle: nothing was sent
                }
                return Err(AttemptError::NotSent {
                    authority: pool.authority().clone(),
                    source: source.into(),
                });
            }
            match self.read_response_head(&mut conn, pool).await {
                Ok(head) => {
                    return Ok(Answer {
                        conn,
                        head,
                        pool: pool.clone(),
                        completion: Completion::default(),
                    });
                }
                // A pooled connection the replica closed before reading the
                // request: transparent for a request that may be repeated.
                Err(HeadError::Closed) if conn.reused && self.head.idempotent => continue,
                Err(HeadError::Closed) => {
                    return Err(AttemptError::NoResponse {
                        authority: pool.authority().clone(),
                        source: None,
                    });
                }
                Err(HeadError::Attempt(e)) => return Err(e),
            }
        }
    }
}

/// Why no final response head was read.
enum HeadError {
    /// The connection ended before any byte of a response.
    Closed,
    Attempt(AttemptError),
}

impl FastExchange<'_> {
    /// Read until a final response head is at the start of `conn.buf`;
    /// interim ones are forwarded to the client as they come.
    async fn read_response_head(
        &mut self,
        conn: &mut Conn,
        pool: &RawPool,
    ) -> Result<ResponseHead, HeadError> {
        let authority = || pool.authority().clone();
        let mut answered = false;
        let mut interim = 0;
        loop {
            let parsed = if conn.buf.is_empty() {
                None
            } else {
                response::parse(&conn.buf, self.head.is_head, MAX_RESPONSE_HEAD_BYTES).map_err(
                    |e| {
                        HeadError::Attempt(AttemptError::InvalidResponse {
                            authority: authority(),
                            source: e.into(),
                        })
                    },
                )?
            };
            if let Some(head) = parsed {
                if head.status >= 200 {
                    return Ok(head);
                }
                interim += 1;
                if interim > MAX_INTERIM_RESPONSES {
                    return Err(HeadError::Attempt(AttemptError::InvalidResponse {
                        authority: authority(),
                        source: format!("more than {MAX_INTERIM_RESPONSES} interim responses")
                            .into(),
                    }));
                }
                self.forward_interim(conn, &head).await?;
                answered = true;
                continue;
            }
            if conn.buf.capacity() - conn.buf.len() < MIN_READ {
                conn.buf.reserve(READ_CHUNK);
            }
            let read = conn.stream.read_buf(&mut conn.buf).await.map_err(|e| {
                HeadError::Attempt(AttemptError::NoResponse {
                    authority: authority(),
                    source: Some(e.into()),
                })
            })?;
            if read == 0 {
                return Err(if conn.buf.is_empty() && !answered {
                    HeadError::Closed
                } else {
                    // Part of a head, or interim responses and no final
                    // one: the replica has seen the request.
                    HeadError::Attempt(AttemptError::InvalidResponse {
                        authority: authority(),
                        source: "connection closed in the middle of the response".into(),
                    })
                });
            }
        }
    }

    /// Send the interim response at the start of `conn.buf` to the client
    /// (without hop-by-hop headers) and drop it from the buffer.
    async fn forward_interim(
        &mut self,
        conn: &mut Conn,
        head: &ResponseHead,
    ) -> Result<(), HeadError> {
        let bytes = if head.rebuild {
            self.scratch.clear();
            response::rebuild(&conn.buf, head, false, self.scratch);
            &self.scratch[..]
        } else {
            &conn.buf[..head.len]
        };
        self.client
            .write_all(bytes)
            .await
            .map_err(|source| HeadError::Attempt(AttemptError::Client { source }))?;
        conn.buf.advance(head.len);
        Ok(())
    }
}
