//! A client layer that refuses every write (any method but GET, HEAD and OPTIONS) while
//! the [`LeaderGuard`] does not hold. It sits in the controller's client, so no write
//! path (children, status, finalizers, Events) can get past a lapsed lease; reads and
//! watches go on. The check runs as the request is dispatched, not when it was planned.

use http::{Method, Request};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::election::LeaderGuard;

/// The error a fenced write fails with.
#[derive(Debug, thiserror::Error)]
#[error("not the leader: the leader lease was not renewed in time; {method} {path} not sent")]
pub struct NotLeading {
    pub method: Method,
    pub path: String,
}

/// Whether `error` (from a kube call) is a write refused by the fence.
pub fn is_not_leading(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Service(e) if e.is::<NotLeading>())
}

/// The layer: wraps the client's service.
#[derive(Clone)]
pub struct WriteFenceLayer(pub LeaderGuard);

impl<S> tower_layer::Layer<S> for WriteFenceLayer {
    type Service = WriteFence<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WriteFence {
            inner,
            guard: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WriteFence<S> {
    inner: S,
    guard: LeaderGuard,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower_service::Service<Request<B>> for WriteFence<S>
where
    S: tower_service::Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let reads = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if !reads && !self.guard.holds() {
            let refused = NotLeading {
                method: request.method().clone(),
                path: request.uri().path().to_string(),
            };
            return Box::pin(std::future::ready(Err(Box::new(refused) as BoxError)));
        }
        let call = self.inner.call(request);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::time::{Duration, Instant};
    use tower_service::Service;

    #[derive(Clone)]
    struct Echo;
    impl Service<Request<()>> for Echo {
        type Response = &'static str;
        type Error = Infallible;
        type Future = std::future::Ready<Result<&'static str, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok("sent"))
        }
    }

    fn request(method: Method) -> Request<()> {
        let mut r = Request::new(());
        *r.method_mut() = method;
        r
    }

    #[tokio::test]
    async fn writes_pass_only_while_the_guard_holds_and_reads_always_pass() {
        let guard = LeaderGuard::elected();
        let mut fence = tower_layer::Layer::layer(&WriteFenceLayer(guard.clone()), Echo);
        let refused = fence.call(request(Method::PATCH)).await;
        assert!(refused.is_err_and(|e| e.is::<NotLeading>()));
        assert!(fence.call(request(Method::GET)).await.is_ok());
        guard.arm(Instant::now() + Duration::from_secs(60));
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(fence.call(request(method)).await.is_ok());
        }
        guard.disarm();
        assert!(fence.call(request(Method::DELETE)).await.is_err());
        assert!(fence.call(request(Method::GET)).await.is_ok());
    }
}
