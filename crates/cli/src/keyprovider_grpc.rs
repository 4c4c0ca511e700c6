//! The ocicrypt key provider's gRPC transport (`veil keyprovider --grpc
//! ADDR`): service `keyprovider.KeyProviderService` with the unary methods
//! `WrapKey` and `UnWrapKey`, each taking and returning one message whose
//! single `bytes` field (1) carries the same JSON as the `cmd` transport.
//!
//! The service is written by hand on tonic's server types rather than
//! generated: generation needs `protoc` at build time, and this service is
//! two methods over one one-field message (ocicrypt's `keyprovider.proto`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

/// `keyProviderKeyWrapProtocolInput`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WrapInput {
    #[prost(bytes = "vec", tag = "1")]
    pub key_provider_key_wrap_protocol_input: Vec<u8>,
}

/// `keyProviderKeyWrapProtocolOutput`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WrapOutput {
    #[prost(bytes = "vec", tag = "1")]
    pub key_provider_key_wrap_protocol_output: Vec<u8>,
}

/// The gRPC path of a method.
pub const WRAP_KEY: &str = "/keyprovider.KeyProviderService/WrapKey";
/// The gRPC path of a method.
pub const UNWRAP_KEY: &str = "/keyprovider.KeyProviderService/UnWrapKey";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What answers a call: (`true` for WrapKey, the JSON input) → JSON output
/// or an error message.
pub type Handler = Arc<dyn Fn(bool, Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> + Send + Sync>;

/// The service.
#[derive(Clone)]
pub struct KeyProviderService {
    handler: Handler,
}

impl KeyProviderService {
    pub fn new(handler: Handler) -> Self {
        KeyProviderService { handler }
    }
}

impl NamedService for KeyProviderService {
    const NAME: &'static str = "keyprovider.KeyProviderService";
}

/// One unary method.
#[derive(Clone)]
struct Method {
    handler: Handler,
    wrap: bool,
}

impl Service<tonic::Request<WrapInput>> for Method {
    type Response = tonic::Response<WrapOutput>;
    type Error = tonic::Status;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<WrapInput>) -> Self::Future {
        let handler = self.handler.clone();
        let wrap = self.wrap;
        Box::pin(async move {
            let input = request.into_inner().key_provider_key_wrap_protocol_input;
            match handler(wrap, input).await {
                Ok(output) => Ok(tonic::Response::new(WrapOutput {
                    key_provider_key_wrap_protocol_output: output,
                })),
                Err(e) => Err(tonic::Status::invalid_argument(e)),
            }
        })
    }
}

impl Service<http::Request<Body>> for KeyProviderService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let wrap = match req.uri().path() {
            WRAP_KEY => Some(true),
            UNWRAP_KEY => Some(false),
            _ => None,
        };
        let handler = self.handler.clone();
        Box::pin(async move {
            Ok(match wrap {
                Some(wrap) => {
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                        WrapOutput,
                        WrapInput,
                    >::default());
                    grpc.unary(Method { handler, wrap }, req).await
                }
                None => tonic::Status::unimplemented("no such method").into_http(),
            })
        })
    }
}
