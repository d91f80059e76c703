//! Remote leases (`RemoteLease` / `RemoteLeaseOk`): a client on another
//! host asks a worker to pin blocks of its memory tier and register them
//! with the fabric, and reads them with one-sided RDMA reads (docs/RDMA.md).
//! Layouts: docs/DATA-PROTOCOL.md, "Remote leases".

use crate::codec::{BodyError, BodyReader, BodyWriter};
use crate::frames::{MAX_LEASE_BATCH, ReadRequest, malformed};
use crate::{Kind, WireError};

/// Longest fabric address a worker may send (libfabric's are tens of bytes;
/// `FI_NAME_MAX` is 64).
pub const MAX_FABRIC_ADDRESS: usize = 256;

/// `RemoteLease`: the client's provider and whether it needs the worker's
/// fabric (its first request on a connection), then the blocks, each a read
/// request for the whole block as in `Lease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLease {
    /// The libfabric provider the client reads with ("tcp;ofi_rxm").
    pub provider: String,
    /// Send the worker's fabric (address, provider, registration mode) in
    /// the answer.
    pub want_fabric: bool,
    pub items: Vec<ReadRequest>,
}

impl RemoteLease {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::default();
        w.u8(u8::from(self.want_fabric)).str(&self.provider);
        w.0.extend_from_slice(&crate::encode_lease(&self.items));
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b);
        let (flags, provider) =
            (|| Ok::<_, BodyError>((r.u8()?, r.str()?)))().map_err(malformed(Kind::RemoteLease))?;
        if flags > 1 {
            return Err(WireError::Malformed {
                kind: Kind::RemoteLease,
                reason: format!("flags {flags:#x}: only bit 0 (send your fabric) is defined"),
            });
        }
        let rest = r
            .take_bytes(b.len() - 1 - 2 - provider.len())
            .map_err(malformed(Kind::RemoteLease))?;
        let items = crate::decode_lease(rest).map_err(|e| match e {
            WireError::Malformed { reason, .. } => WireError::Malformed {
                kind: Kind::RemoteLease,
                reason,
            },
            e => e,
        })?;
        Ok(Self {
            provider,
            want_fabric: flags == 1,
            items,
        })
    }
}

/// The worker's fabric endpoint, as a client connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fabric {
    pub provider: String,
    /// libfabric's `mr_mode` bits of the worker's domain.
    pub mr_mode: u64,
    /// The endpoint's address (`fi_getname`), for the client's `fi_av_insert`.
    pub address: Vec<u8>,
}

/// One answer of `RemoteLeaseOk`, in request order. `code` 0: granted, and
/// `{addr, len, key}` is the block's registration; otherwise an Eddy error
/// code and a message, and the block is read over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteGrant {
    pub block_id: u64,
    pub lease_id: u64,
    /// Bytes of the block (from offset 0).
    pub length: u64,
    /// Remote address of the block's byte 0: a virtual address under
    /// `FI_MR_VIRT_ADDR`, else 0 (addresses are offsets).
    pub addr: u64,
    /// Bytes the registration covers (at least `length`).
    pub region_len: u64,
    pub key: u64,
    pub code: u16,
    pub message: String,
}

/// `RemoteLeaseOk`: lease lifetime, the worker's fabric epoch, its fabric
/// when asked for, and one grant per block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLeaseOk {
    pub ttl_ms: u64,
    /// Changes whenever the worker opens its fabric again (a restart): keys
    /// of another epoch open nothing, and a client that sees a new epoch
    /// connects to the fabric again.
    pub epoch: u64,
    pub fabric: Option<Fabric>,
    pub grants: Vec<RemoteGrant>,
}

impl RemoteLeaseOk {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::default();
        w.u64(self.ttl_ms).u64(self.epoch);
        match &self.fabric {
            Some(f) => {
                let n = f.address.len().min(MAX_FABRIC_ADDRESS);
                w.u8(1).str(&f.provider).u64(f.mr_mode).u16(n as u16);
                w.0.extend_from_slice(&f.address[..n]);
            }
            None => {
                w.u8(0);
            }
        }
        w.u16(self.grants.len() as u16);
        for g in &self.grants {
            w.u64(g.block_id)
                .u64(g.lease_id)
                .u64(g.length)
                .u64(g.addr)
                .u64(g.region_len)
                .u64(g.key)
                .u16(g.code)
                .str(&g.message);
        }
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b);
        (|| {
            let ttl_ms = r.u64()?;
            let epoch = r.u64()?;
            let fabric = match r.u8()? {
                0 => None,
                1 => {
                    let provider = r.str()?;
                    let mr_mode = r.u64()?;
                    let n = r.u16()? as usize;
                    if n == 0 || n > MAX_FABRIC_ADDRESS {
                        return Err(BodyError::Invalid("fabric address of 0 or over 256 bytes"));
                    }
                    let address = r.take_bytes(n)?.to_vec();
                    Some(Fabric {
                        provider,
                        mr_mode,
                        address,
                    })
                }
                _ => return Err(BodyError::Invalid("fabric flag is neither 0 nor 1")),
            };
            let n = r.u16()? as usize;
            if n > MAX_LEASE_BATCH {
                return Err(BodyError::Invalid("more grants than a request may ask for"));
            }
            let mut grants = Vec::with_capacity(n);
            for _ in 0..n {
                grants.push(RemoteGrant {
                    block_id: r.u64()?,
                    lease_id: r.u64()?,
                    length: r.u64()?,
                    addr: r.u64()?,
                    region_len: r.u64()?,
                    key: r.u64()?,
                    code: r.u16()?,
                    message: r.str()?,
                });
            }
            r.end()?;
            Ok(Self {
                ttl_ms,
                epoch,
                fabric,
                grants,
            })
        })()
        .map_err(malformed(Kind::RemoteLeaseOk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReadType, UfsSource};

    fn item(id: u64) -> ReadRequest {
        ReadRequest {
            block_id: id,
            offset: 0,
            length: 4096,
            block_length: 4096,
            file_offset: 0,
            read_type: ReadType::Cache,
            source: Some(UfsSource {
                mount_id: 3,
                key: "a/b".into(),
            }),
            token: vec![7; 40],
        }
    }

    #[test]
    fn a_remote_lease_round_trips() {
        let req = RemoteLease {
            provider: "tcp;ofi_rxm".into(),
            want_fabric: true,
            items: vec![item(1 << 24), item((1 << 24) | 1)],
        };
        assert_eq!(RemoteLease::decode(&req.encode()).unwrap(), req);
        let ok = RemoteLeaseOk {
            ttl_ms: 600_000,
            epoch: 0xfeed,
            fabric: Some(Fabric {
                provider: "tcp;ofi_rxm".into(),
                mr_mode: 0x74,
                address: vec![2, 0, 1, 2, 127, 0, 0, 1],
            }),
            grants: vec![RemoteGrant {
                block_id: 1 << 24,
                lease_id: 1,
                length: 4096,
                addr: 0,
                region_len: 4096,
                key: u64::MAX,
                code: 0,
                message: String::new(),
            }],
        };
        assert_eq!(RemoteLeaseOk::decode(&ok.encode()).unwrap(), ok);
        let bare = RemoteLeaseOk { fabric: None, ..ok };
        assert_eq!(RemoteLeaseOk::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn garbage_remote_leases_are_malformed_not_panics() {
        let good = RemoteLease {
            provider: "verbs;ofi_rxm".into(),
            want_fabric: false,
            items: vec![item(5)],
        }
        .encode();
        // Every prefix, and every single-byte change, decodes or is refused.
        for n in 0..good.len() {
            assert!(RemoteLease::decode(&good[..n]).is_err(), "prefix {n}");
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = RemoteLease::decode(&b);
        }
        let mut flags = good.clone();
        flags[0] = 2;
        let e = RemoteLease::decode(&flags).unwrap_err().to_string();
        assert!(e.contains("flags"), "{e}");
        // No blocks, and more than a batch, are refused.
        let none = RemoteLease {
            items: vec![],
            ..RemoteLease::decode(&good).unwrap()
        };
        assert!(RemoteLease::decode(&none.encode()).is_err());
        let many = RemoteLease {
            items: (0..65).map(item).collect(),
            ..RemoteLease::decode(&good).unwrap()
        };
        let e = RemoteLease::decode(&many.encode()).unwrap_err().to_string();
        assert!(e.contains("65 blocks"), "{e}");
    }

    #[test]
    fn garbage_answers_are_malformed() {
        let ok = RemoteLeaseOk {
            ttl_ms: 1,
            epoch: 2,
            fabric: Some(Fabric {
                provider: "p".into(),
                mr_mode: 0,
                address: vec![1; 16],
            }),
            grants: vec![],
        }
        .encode();
        for n in 0..ok.len() {
            assert!(RemoteLeaseOk::decode(&ok[..n]).is_err(), "prefix {n}");
        }
        let mut flag = ok.clone();
        flag[16] = 9;
        assert!(RemoteLeaseOk::decode(&flag).is_err());
        let mut extra = ok;
        extra.push(0);
        assert!(RemoteLeaseOk::decode(&extra).is_err());
    }
}
