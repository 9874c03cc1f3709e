//! Where a process listens: a unix socket path, or a TCP or HTTP socket address.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a process listens, as [`ProcessInfo::endpoint`](crate::ProcessInfo::endpoint)
/// reports it and as a manager's `connect` and a standalone host take it.
///
/// Written as text, it is `unix:/path/to.sock`, `tcp:ip:port` or `http://ip:port`; `parse`
/// (or [`FromStr`]) reads that form and `Display` writes it, so the two round-trip, for a
/// unix path that is valid UTF-8 (`Display` writes other bytes lossily, as `Path::display`
/// does; such an address can be built, but not written as text).
///
/// ```
/// use pm_core::Address;
///
/// let address: Address = "tcp:127.0.0.1:7000".parse()?;
/// assert_eq!(address, Address::Tcp("127.0.0.1:7000".parse()?));
/// assert_eq!(address.to_string(), "tcp:127.0.0.1:7000");
/// assert!("tcp:localhost:7000".parse::<Address>().is_err()); // an IP, not a host name
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A unix domain socket at this path.
    Unix(PathBuf),
    /// A TCP socket.
    Tcp(SocketAddr),
    /// HTTP/1.1 with a WebSocket upgrade at `/ws`, plus the JSON endpoints.
    Http(SocketAddr),
}

/// Text that is not an [`Address`]: it says what was wrong and how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(String);

impl Address {
    /// Parses `unix:/path/to.sock`, `tcp:ip:port` or `http://ip:port` (a trailing `/` is
    /// allowed after the port).
    ///
    /// # Errors
    /// [`AddressError`] for an unknown scheme, an empty socket path, or a TCP or HTTP
    /// address that is not an `ip:port` (host names are not resolved).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let socket = |rest: &str| {
            rest.trim_end_matches('/')
                .parse::<SocketAddr>()
                .map_err(|err| AddressError(format!("`{text}` does not end in an ip:port: {err}")))
        };
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressError(format!("`{text}` has no socket path")));
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if let Some(rest) = text.strip_prefix("tcp:") {
            socket(rest).map(Address::Tcp)
        } else if let Some(rest) = text.strip_prefix("http://") {
            socket(rest).map(Address::Http)
        } else {
            Err(AddressError(format!(
                "`{text}` is not an address: write `unix:/path`, `tcp:ip:port` or `http://ip:port`"
            )))
        }
    }

    /// The socket address of a TCP or HTTP address; `None` for a unix socket.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Unix(_) => None,
            Address::Tcp(addr) | Address::Http(addr) => Some(*addr),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Address::parse(text)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp(addr) => write!(f, "tcp:{addr}"),
            Address::Http(addr) => write!(f, "http://{addr}"),
        }
    }
}

/// Something that names an [`Address`]: an `Address` itself, or its text form (`&str`,
/// `String`). What a manager's `connect` takes, as `std::net::ToSocketAddrs` is what
/// `TcpStream::connect` takes.
pub trait ToAddress {
    /// The address this names.
    ///
    /// # Errors
    /// [`AddressError`] when text does not parse (see [`Address::parse`]).
    fn to_address(&self) -> Result<Address, AddressError>;
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address, AddressError> {
        Ok(self.clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address, AddressError> {
        Address::parse(self)
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address, AddressError> {
        Address::parse(self)
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> Result<Address, AddressError> {
        (**self).to_address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_address_round_trips_through_its_text() {
        for text in [
            "unix:/run/titan/calc.sock",
            "tcp:127.0.0.1:7000",
            "tcp:[::1]:7000",
            "http://0.0.0.0:8080",
        ] {
            let address = Address::parse(text).expect(text);
            assert_eq!(address.to_string(), text);
            assert_eq!(address.to_address(), Ok(address.clone()));
        }
    }

    #[test]
    fn text_that_is_no_address_says_how_to_write_one() {
        let err = Address::parse("ftp://x").expect_err("no scheme");
        assert!(err.to_string().contains("write `unix:/path`"), "{err}");
        let err = Address::parse("unix:").expect_err("no path");
        assert!(err.to_string().contains("no socket path"), "{err}");
        let err = "http://example.invalid:80"
            .to_address()
            .expect_err("a name");
        assert!(err.to_string().contains("ip:port"), "{err}");
    }
}
