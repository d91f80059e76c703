//! The C shim's functions (shim/eddy_fabric.c) and the libfabric constants
//! the safe layer uses. The constants are written out here, not generated:
//! `constants_match_the_installed_headers` compares them with what the shim
//! compiled from the headers.

use std::ffi::{c_char, c_int, c_void};

/// The shim's handle: fabric, domain, AV, CQ and endpoint of one provider.
#[repr(C)]
pub struct EddyFab {
    _opaque: [u8; 0],
}

/// libfabric's `struct fid_mr`, only ever behind a pointer.
#[repr(C)]
pub struct FidMr {
    _opaque: [u8; 0],
}

/// What the provider granted (`struct eddy_fab_attr`).
#[repr(C)]
pub struct FabAttr {
    pub mr_mode: u64,
    pub max_msg_size: u64,
    pub mr_key_size: u64,
    pub tx_size: u64,
    pub manual_progress: c_int,
    pub provider: [c_char; 64],
}

#[cfg(test)]
/// `struct eddy_fi_consts`: the header values, as the shim saw them.
#[repr(C)]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FiConsts {
    pub mr_local: u64,
    pub mr_virt_addr: u64,
    pub mr_allocated: u64,
    pub mr_prov_key: u64,
    pub mr_endpoint: u64,
    pub rma: u64,
    pub read: u64,
    pub remote_read: u64,
    pub transmit: u64,
    pub recv: u64,
    pub eagain: i64,
    pub eavail: i64,
    pub ecanceled: i64,
    pub eaccess: i64,
    pub einval: i64,
    pub enodata: i64,
    pub etoosmall: i64,
    pub version: u32,
    pub enomem: i64,
    pub efault: i64,
    pub eperm: i64,
}

pub const FI_MR_LOCAL: u64 = 1 << 2;
pub const FI_MR_VIRT_ADDR: u64 = 1 << 4;
pub const FI_MR_ALLOCATED: u64 = 1 << 5;
pub const FI_MR_PROV_KEY: u64 = 1 << 6;
pub const FI_MR_ENDPOINT: u64 = 1 << 9;
#[cfg(test)]
pub const FI_RMA: u64 = 1 << 2;
pub const FI_READ: u64 = 1 << 8;
pub const FI_REMOTE_READ: u64 = 1 << 12;
#[cfg(test)]
pub const FI_TRANSMIT: u64 = 1 << 11;
#[cfg(test)]
pub const FI_RECV: u64 = 1 << 10;
pub const FI_EAGAIN: i64 = 11;
pub const FI_EAVAIL: i64 = 259;
#[cfg(test)]
pub const FI_ECANCELED: i64 = 125;
pub const FI_EACCES: i64 = 13;
pub const FI_ENOMEM: i64 = 12;
pub const FI_EFAULT: i64 = 14;
pub const FI_EPERM: i64 = 1;
pub const FI_EINVAL: i64 = 22;
#[cfg(test)]
pub const FI_ENODATA: i64 = 61;
pub const FI_ETOOSMALL: i64 = 257;
/// `FI_VERSION(1, 17)`: the API the shim asks for.
#[cfg(test)]
pub const FI_VERSION: u32 = (1 << 16) | 17;

#[cfg(test)]
/// The values above in the shim's struct layout, for the header check.
pub fn rust_consts() -> FiConsts {
    FiConsts {
        mr_local: FI_MR_LOCAL,
        mr_virt_addr: FI_MR_VIRT_ADDR,
        mr_allocated: FI_MR_ALLOCATED,
        mr_prov_key: FI_MR_PROV_KEY,
        mr_endpoint: FI_MR_ENDPOINT,
        rma: FI_RMA,
        read: FI_READ,
        remote_read: FI_REMOTE_READ,
        transmit: FI_TRANSMIT,
        recv: FI_RECV,
        eagain: FI_EAGAIN,
        eavail: FI_EAVAIL,
        ecanceled: FI_ECANCELED,
        eaccess: FI_EACCES,
        einval: FI_EINVAL,
        enodata: FI_ENODATA,
        etoosmall: FI_ETOOSMALL,
        version: FI_VERSION,
        enomem: FI_ENOMEM,
        efault: FI_EFAULT,
        eperm: FI_EPERM,
    }
}

#[cfg(test)]
/// The header values the shim was compiled with.
pub fn shim_consts() -> FiConsts {
    let mut c = FiConsts::default();
    // SAFETY: the shim writes each field of a valid, exclusively borrowed
    // struct whose layout matches `struct eddy_fi_consts` (#[repr(C)]).
    unsafe { eddy_fi_consts(&mut c) };
    c
}

/// Loads libfabric (once per process; the shim's dlopen of
/// `$EDDY_LIBFABRIC` or `libfabric.so.1`, which puts back the signal
/// handlers its providers' libraries install). `None` once loaded; why
/// not, if not.
pub fn load_failure() -> Option<String> {
    let mut buf = [0 as c_char; 512];
    // SAFETY: the shim writes at most `buf.len()` bytes, NUL-terminated.
    let rc = unsafe { eddy_fab_load(buf.as_mut_ptr(), buf.len()) };
    if rc == 0 {
        return None;
    }
    // SAFETY: NUL-terminated by the shim (snprintf), inside `buf`.
    let why = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(why.to_string_lossy().into_owned())
}

/// libfabric's text for an error code (either sign).
pub fn strerror(code: i64) -> String {
    let code = c_int::try_from(code.unsigned_abs()).unwrap_or(c_int::MAX);
    // SAFETY: fi_strerror returns a pointer to a static NUL-terminated
    // string (or NULL), valid for the life of the process.
    let s = unsafe { eddy_fi_strerror(code) };
    if s.is_null() {
        return format!("libfabric error {code}");
    }
    // SAFETY: non-NULL, NUL-terminated and static, as above.
    unsafe { std::ffi::CStr::from_ptr(s) }
        .to_string_lossy()
        .into_owned()
}

// SAFETY: these declarations match shim/eddy_fabric.c one for one
// (argument order, widths, pointer kinds); callers keep the pointer
// contracts each function's comment in the C file states.
unsafe extern "C" {
    #[cfg(test)]
    fn eddy_fi_consts(c: *mut FiConsts);
    fn eddy_fi_strerror(err: c_int) -> *const c_char;
    fn eddy_fab_load(err: *mut c_char, len: usize) -> c_int;
    pub fn eddy_fab_open(
        prov: *const c_char,
        node: *const c_char,
        out: *mut *mut EddyFab,
        step: *mut c_int,
    ) -> c_int;
    pub fn eddy_fab_close_ep(f: *mut EddyFab) -> c_int;
    pub fn eddy_fab_close(f: *mut EddyFab);
    pub fn eddy_fab_attr(f: *const EddyFab, a: *mut FabAttr);
    pub fn eddy_fab_getname(f: *mut EddyFab, buf: *mut c_void, len: *mut usize) -> c_int;
    pub fn eddy_fab_av_insert(f: *mut EddyFab, addr: *const c_void, out: *mut u64) -> c_int;
    pub fn eddy_fab_mr_reg(
        f: *mut EddyFab,
        buf: *const c_void,
        len: usize,
        access: u64,
        requested_key: u64,
        mr: *mut *mut FidMr,
        key: *mut u64,
        desc: *mut *mut c_void,
    ) -> c_int;
    pub fn eddy_mr_close(mr: *mut FidMr) -> c_int;
    pub fn eddy_fab_read(
        f: *mut EddyFab,
        buf: *mut c_void,
        len: usize,
        desc: *mut c_void,
        peer: u64,
        addr: u64,
        key: u64,
        context: *mut c_void,
    ) -> isize;
    pub fn eddy_fab_cq_read(f: *mut EddyFab, ctx: *mut *mut c_void, max: usize) -> isize;
    pub fn eddy_fab_cq_readerr(
        f: *mut EddyFab,
        ctx: *mut *mut c_void,
        err: *mut c_int,
        text: *mut c_char,
        text_len: usize,
    ) -> c_int;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_installed_headers() {
        assert_eq!(
            rust_consts(),
            shim_consts(),
            "src/sys.rs and the libfabric headers disagree: fix the constants in sys.rs"
        );
    }

    #[test]
    fn error_text_comes_from_libfabric() {
        assert!(strerror(FI_ECANCELED).to_lowercase().contains("cancel"));
        assert_eq!(strerror(FI_EAGAIN), strerror(-FI_EAGAIN));
    }
}
