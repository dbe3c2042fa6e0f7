//! Sockets passed by the service manager (systemd socket activation, `sd_listen_fds(3)`): the
//! DNS sockets of `lodestar-dns.socket`, and a metrics listener named `metrics`. systemd keeps
//! them open while the service restarts, so queries that arrive meanwhile wait in them instead
//! of being refused.
//!
//! Data flow: `main`, still single-threaded, calls [`take`] (which reads and clears
//! `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` through the `sd-notify` crate), then hands the
//! [`Passed`] sockets to [`super::serve`] in place of binding `--listen`. [`classify`] is the
//! pure part: what each descriptor is, checked (an IP socket, UDP or a listening TCP socket).
//!
//! A leaf of `net`: it imports `socket2`, `sd-notify` and the standard library only.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The name (`FileDescriptorName=` in a socket unit) of a listener for the metrics endpoints.
pub const METRICS: &str = "metrics";

/// What the service manager passed.
#[derive(Debug, Default)]
pub struct Activated {
    /// DNS sockets, in the order passed.
    pub dns: Vec<Passed>,
    /// The metrics endpoints' listener, when one is named [`METRICS`].
    pub metrics: Option<std::net::TcpListener>,
}

/// A passed DNS socket.
#[derive(Debug)]
pub enum Passed {
    Udp(socket2::Socket),
    Tcp(std::net::TcpListener),
}

impl Passed {
    /// The address it is bound to.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Passed::Udp(s) => ip_addr(s),
            Passed::Tcp(l) => l.local_addr(),
        }
    }
}

impl Activated {
    /// The addresses of the DNS sockets, each once (a UDP and a TCP socket usually share one).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in self.dns.iter().filter_map(|p| p.addr().ok()) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

/// Why the passed descriptors cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("socket activation: LISTEN_FDS/LISTEN_FDNAMES: {0}")]
    Environment(std::io::Error),
    #[error("socket activation: descriptor {fd} (named {name:?}) is {what}")]
    Unusable {
        fd: RawFd,
        name: String,
        what: String,
    },
}

/// Takes the sockets passed to this process (none when `LISTEN_PID` names another process or
/// nothing is set) and clears the variables, so that no child inherits them.
///
/// # Safety
///
/// Changes the environment: call it before any other thread starts (before the runtime).
pub unsafe fn take() -> Result<Activated, ActivationError> {
    // SAFETY: the caller runs this before any thread starts, as `remove_var` requires.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
        .map_err(ActivationError::Environment)?;
    let owned = fds
        .map(|(fd, name)| {
            // SAFETY: sd_listen_fds' contract: descriptors 3.. up to LISTEN_FDS are open, passed
            // to this process (LISTEN_PID checked) and owned by nobody else in it.
            (fd, unsafe { OwnedFd::from_raw_fd(fd) }, name)
        })
        .collect();
    classify(owned)
}

/// Sorts passed descriptors (number, descriptor, name) into DNS sockets and the metrics
/// listener; anything else (not an IP socket, a TCP socket that does not listen, a second
/// metrics listener) is an error naming the descriptor.
pub fn classify(fds: Vec<(RawFd, OwnedFd, String)>) -> Result<Activated, ActivationError> {
    let mut out = Activated::default();
    for (fd, owned, name) in fds {
        let unusable = |what: &str| ActivationError::Unusable {
            fd,
            name: name.clone(),
            what: what.to_string(),
        };
        let socket = socket2::Socket::from(owned);
        let kind = socket.r#type().map_err(|_| unusable("not a socket"))?;
        let addr = ip_addr(&socket).map_err(|_| unusable("not an IP socket"))?;
        let passed = if kind == socket2::Type::DGRAM {
            Passed::Udp(socket)
        } else if kind == socket2::Type::STREAM {
            if !socket.is_listener().unwrap_or(false) {
                return Err(unusable(&format!(
                    "a TCP socket on {addr} that does not listen"
                )));
            }
            Passed::Tcp(socket.into())
        } else {
            return Err(unusable(&format!(
                "a socket on {addr} that is neither UDP nor TCP"
            )));
        };
        match (name.as_str(), passed) {
            (METRICS, Passed::Tcp(l)) if out.metrics.is_none() => out.metrics = Some(l),
            (METRICS, _) => {
                return Err(unusable(
                    "named metrics but not the only TCP listener so named",
                ))
            }
            (_, p) => out.dns.push(p),
        }
    }
    Ok(out)
}

/// The IP address a socket is bound to.
fn ip_addr(socket: &socket2::Socket) -> std::io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP socket"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    fn own<T: Into<OwnedFd>>(s: T, name: &str) -> (RawFd, OwnedFd, String) {
        let fd: OwnedFd = s.into();
        (fd.as_raw_fd(), fd, name.to_string())
    }

    #[test]
    fn udp_and_listening_tcp_are_dns_and_the_one_named_metrics_serves_metrics() {
        // A port free for both (another test may hold the TCP one).
        let (udp, tcp) = (0..20)
            .find_map(|_| {
                let udp = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = std::net::TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .unwrap();
        let addr = udp.local_addr().unwrap();
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let maddr = metrics.local_addr().unwrap();
        let got = classify(vec![
            own(udp, "dns"),
            own(tcp, "dns"),
            own(metrics, METRICS),
        ])
        .unwrap();
        assert_eq!(got.addresses(), vec![addr]);
        assert!(matches!(got.dns[0], Passed::Udp(_)) && matches!(got.dns[1], Passed::Tcp(_)));
        assert_eq!(got.metrics.unwrap().local_addr().unwrap(), maddr);
    }

    #[test]
    fn a_file_a_unix_socket_or_a_tcp_socket_that_does_not_listen_is_refused_by_number_and_name() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let err = classify(vec![own(file, "dns")]).unwrap_err().to_string();
        assert!(err.contains("(named \"dns\") is not a socket"), "{err}");

        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let err = classify(vec![own(a, "x")]).unwrap_err().to_string();
        assert!(err.contains("is not an IP socket"), "{err}");

        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let fd = s.into_raw_fd();
        // SAFETY: the descriptor was just released by its socket.
        let err = classify(vec![(
            fd,
            unsafe { OwnedFd::from_raw_fd(fd) },
            "dns".into(),
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not listen"), "{err}");

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = classify(vec![own(udp, METRICS)]).unwrap_err().to_string();
        assert!(err.contains("named metrics"), "{err}");
    }
}
