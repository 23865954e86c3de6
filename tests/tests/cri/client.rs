//! A kubelet's side of the CRI: the `k8s-cri` crate's generated v1 gRPC clients (the
//! `runtime.v1` API that containerd 1.6 serves beside v1alpha2) over tonic, connected to a
//! unix socket. Every call runs on a private single-threaded tokio runtime with a timeout,
//! so a hung daemon fails the test instead of stalling it.
// Shared by cri.rs and cri_bench.rs, each of which uses a part.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Generous: a sandbox start on a loaded 2-core machine runs CNI plugins, mounts a
/// snapshot and starts a shim.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub type Runtime = RuntimeServiceClient<Channel>;
pub type Images = ImageServiceClient<Channel>;

pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: Runtime,
    images: Images,
}

impl Cri {
    /// Connects to the CRI socket at `sock` (both services share it).
    pub fn connect(sock: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let path: PathBuf = sock.to_path_buf();
        let channel = rt.block_on(async move {
            // The URI is required by the API and unused: the connector dials the socket.
            Endpoint::try_from("http://[::]:50051")
                .map_err(|e| e.to_string())?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let p = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(p).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| format!("connecting to {}: {e}", sock.display()))
        })?;
        Ok(Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// One RuntimeService call: `f` gets a client handle (a cheap clone of the channel).
    pub fn rs<T, Fut>(&self, what: &str, f: impl FnOnce(Runtime) -> Fut) -> Result<T, tonic::Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let c = self.runtime.clone();
        self.block(what, f(c))
    }

    /// One ImageService call.
    pub fn is<T, Fut>(&self, what: &str, f: impl FnOnce(Images) -> Fut) -> Result<T, tonic::Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let c = self.images.clone();
        self.block(what, f(c))
    }

    fn block<T, Fut>(&self, what: &str, fut: Fut) -> Result<T, tonic::Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match self
            .rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await })
        {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "CRI {what} took longer than {CALL_TIMEOUT:?}"
            ))),
        }
    }
}

/// Unwraps a CRI answer, naming the call in the panic.
#[track_caller]
pub fn ok<T>(what: &str, r: Result<T, tonic::Status>) -> T {
    match r {
        Ok(v) => v,
        Err(s) => panic!("CRI {what} failed: {:?}: {}", s.code(), s.message()),
    }
}
