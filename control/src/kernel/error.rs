//! Why a kernel interface could not be made: each error names the configuration key
//! (`FILE: ports[i].kernel_interface `NAME``, boxed to keep the error small) and what failed.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use vipd_dataplane::io::dpdk::DpdkError;

/// The kernel interface an error is about, as the configuration names it.
#[derive(Debug, Clone)]
pub struct InterfaceKey {
    /// The configuration file.
    pub file: PathBuf,
    /// Index of the port in `ports`.
    pub port: usize,
    /// The VLAN's id, for a VLAN's kernel interface.
    pub vlan: Option<u16>,
    /// The interface's name.
    pub name: String,
}

impl fmt::Display for InterfaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vlan {
            None => write!(
                f,
                "{}: ports[{}].kernel_interface `{}`",
                self.file.display(),
                self.port,
                self.name
            ),
            Some(id) => write!(
                f,
                "{}: ports[{}].vlans (id {id}) kernel_interface `{}`",
                self.file.display(),
                self.port,
                self.name
            ),
        }
    }
}

/// A sysctl that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{} = {value}: {source}", path.display())]
pub struct SysctlError {
    /// Its file under /proc/sys.
    pub path: PathBuf,
    /// The value.
    pub value: String,
    /// Why.
    pub source: io::Error,
}

/// Why the kernel interfaces could not be set up (vipd does not start).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The name is taken.
    #[error("{0}: an interface of that name already exists; vipd creates its own (pick another name, or remove the interface)")]
    Exists(Box<InterfaceKey>),
    /// The port has no MAC (a port not brought up).
    #[error("{0}: port has no MAC")]
    NoMac(Box<InterfaceKey>),
    /// The port is missing from the validation.
    #[error("{0}: port not validated")]
    NotValidated(Box<InterfaceKey>),
    /// No netlink socket.
    #[error("{key}: netlink: {source}")]
    Netlink {
        /// The interface.
        key: Box<InterfaceKey>,
        /// Why.
        source: io::Error,
    },
    /// DPDK did not create the tap.
    #[error("{key}: creating the tap ({devargs}): {source}")]
    Tap {
        /// The interface.
        key: Box<InterfaceKey>,
        /// The vdev arguments tried.
        devargs: String,
        /// Why.
        source: DpdkError,
    },
    /// The tap port could not be configured or started.
    #[error("{key}: {source}")]
    Port {
        /// The interface.
        key: Box<InterfaceKey>,
        /// Why.
        source: DpdkError,
    },
    /// An IPv6 sysctl of the interface.
    #[error("{key}: {source}")]
    Sysctl {
        /// The interface.
        key: Box<InterfaceKey>,
        /// Which and why.
        source: SysctlError,
    },
    /// The tap started but the kernel has no interface of its name.
    #[error("{0}: the tap did not create the interface")]
    NoInterface(Box<InterfaceKey>),
    /// A port address could not be put on the interface.
    #[error("{key}: adding {addr}/{len}: {source}")]
    Address {
        /// The interface.
        key: Box<InterfaceKey>,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        len: u8,
        /// Why.
        source: io::Error,
    },
    /// The exception thread's queue of a tap.
    #[error("kernel interface {name}: {source}")]
    Queue {
        /// The interface's name.
        name: String,
        /// Why.
        source: DpdkError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_port_and_interface() {
        let key = Box::new(InterfaceKey {
            file: PathBuf::from("/etc/vipd/vipd.toml"),
            port: 1,
            vlan: None,
            name: "vipd0".into(),
        });
        let vlan = InterfaceKey {
            vlan: Some(200),
            name: "vipd0.200".into(),
            ..(*key).clone()
        };
        assert_eq!(
            vlan.to_string(),
            "/etc/vipd/vipd.toml: ports[1].vlans (id 200) kernel_interface `vipd0.200`"
        );
        assert_eq!(
            KernelError::Exists(key.clone()).to_string(),
            "/etc/vipd/vipd.toml: ports[1].kernel_interface `vipd0`: an interface of that name already exists; vipd creates its own (pick another name, or remove the interface)"
        );
        let e = KernelError::Sysctl {
            key,
            source: SysctlError {
                path: PathBuf::from("/proc/sys/net/ipv6/conf/vipd0/disable_ipv6"),
                value: "0".into(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
        };
        assert_eq!(
            e.to_string(),
            "/etc/vipd/vipd.toml: ports[1].kernel_interface `vipd0`: /proc/sys/net/ipv6/conf/vipd0/disable_ipv6 = 0: permission denied"
        );
    }
}
