//! Shared-memory segments: one memfd per cached block.
//!
//! A block is filled through a writable mapping ([`SegmentWriter`]), then
//! sealed into an immutable [`Segment`]: the writable mapping is dropped, the
//! file is cut to the block's page-rounded length, and the memfd is sealed
//! against writes, shrinking and growing. Only then does anyone else see it,
//! so a client handed the fd (short-circuit) can never write into the cache,
//! and a reader can never see the size change under it (no SIGBUS).
//!
//! A worker whose fabric registers only writable memory (verbs: rxm asks
//! for local write on every region) seals the segments it fills itself
//! with `F_SEAL_FUTURE_WRITE` instead ([`SealMode::Registrable`]): its own
//! writable shared mapping, made before the seal and never written again,
//! stays, and nothing made after the seal can write (no `write(2)`, no
//! writable shared mapping, no `mprotect` to writable of a read-only one).
//! A segment a client filled keeps `F_SEAL_WRITE`, the only seal that
//! proves the client's own writable mapping is gone; it is registered
//! through a private copy-on-write mapping ([`Segment::private_view`]).
//!
//! This module and `fd`-passing code are the only places with `unsafe` in
//! the worker; layouts are in docs/DATA-PROTOCOL.md ("Segments").

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{Mmap, MmapMut, MmapOptions};
use rustix::fs::{MemfdFlags, SealFlags};

const PAGE: u64 = 4096;
const HUGE_PAGE: u64 = 2 << 20;

fn round_up(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// Whether this host has free pages in its 2 MiB hugetlb pool
/// (`/proc/meminfo`: `HugePages_Free` x `Hugepagesize`), in bytes.
pub fn hugetlb_free_bytes(meminfo: &str) -> u64 {
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    match (field("HugePages_Free:"), field("Hugepagesize:")) {
        // Only 2 MiB pages are used.
        (Some(free), Some(2048)) => free * HUGE_PAGE,
        _ => 0,
    }
}

/// Memory for worker-filled segments: huge pages when the host has a
/// hugetlb pool with room (fault-in cost drops about 40x), else 4 KiB
/// pages. Decided per segment, falling back whenever huge pages fail.
fn huge_segment(name: &str, capacity: u64) -> Option<(File, u64)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let size = capacity.max(1).div_ceil(HUGE_PAGE) * HUGE_PAGE;
    if hugetlb_free_bytes(&meminfo) < size {
        return None;
    }
    let fd = rustix::fs::memfd_create(
        name,
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB,
    )
    .ok()?;
    let file = File::from(fd);
    file.set_len(size).ok()?;
    Some((file, size))
}

/// How [`SegmentWriter::seal_with`] seals a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SealMode {
    /// `F_SEAL_WRITE` and a read-only mapping.
    #[default]
    ReadOnly,
    /// `F_SEAL_FUTURE_WRITE`, keeping a writable shared mapping that a
    /// fabric can register (see the module's comment). A segment a client
    /// filled is sealed `ReadOnly` whatever is asked.
    Registrable,
}

/// A block being filled. Dropping it frees the memory.
pub struct SegmentWriter {
    file: File,
    map: Option<MmapMut>,
    capacity: u64,
    /// Handed to a client to fill (short-circuit write).
    by_client: bool,
}

impl SegmentWriter {
    /// A segment on huge pages, mapped, where the host has a hugetlb pool
    /// with room: a shared hugetlb mapping reserves its pages when mapped,
    /// so a short pool fails here, cleanly, and the 4 KiB path takes over.
    fn huge(name: &str, capacity: u64) -> Option<Self> {
        let (file, size) = huge_segment(name, capacity)?;
        // SAFETY: a fresh memfd no one else has: no other mapping or process
        // can change or truncate it while this mapping lives (it is dropped
        // before the file is resized or sealed).
        let map = unsafe { MmapOptions::new().len(size as usize).map_mut(&file) }.ok()?;
        Some(Self {
            file,
            map: Some(map),
            capacity,
            by_client: false,
        })
    }

    /// A new anonymous segment of `capacity` bytes (page-rounded). With
    /// `populate`, its pages are allocated now in one pass instead of one
    /// fault at a time (for fills whose length is known).
    pub fn create(name: &str, capacity: u64, populate: bool) -> std::io::Result<Self> {
        if let Some(w) = Self::huge(name, capacity) {
            return Ok(w);
        }
        let fd: OwnedFd =
            rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let file = File::from(fd);
        let size = round_up(capacity.max(1));
        file.set_len(size)?;
        let mut opts = MmapOptions::new();
        opts.len(size as usize);
        if populate {
            opts.populate();
        }
        // SAFETY: the memfd was created above and has not been shared: no
        // other process or mapping can change or truncate it while this
        // mapping lives (it is dropped before the file is resized or sealed).
        let map = unsafe { opts.map_mut(&file)? };
        // Transparent huge pages where the host allows them for shared
        // memory (`shmem_enabled` = advise); a no-op elsewhere.
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(Self {
            file,
            map: Some(map),
            capacity,
            by_client: false,
        })
    }

    /// A segment the worker fills from a stream of unknown length (a TCP
    /// write): on huge pages where the host has a hugetlb pool (mapped, as
    /// [`SegmentWriter::create`]), else an unmapped memfd that
    /// [`SegmentWriter::write_at`] fills with `pwrite(2)`: one from the
    /// write pool (`pooled`) if it has one, else a fresh one. Writing a
    /// fresh 4 KiB shmem page through the file costs about half of faulting
    /// it into a mapping and copying (the kernel neither traps nor zeroes a
    /// page written whole); a pooled page costs only the copy
    /// (bench/RESULTS.md, "Writes").
    pub fn create_streamed(
        name: &str,
        capacity: u64,
        pooled: impl FnOnce() -> Option<SegmentWriter>,
    ) -> std::io::Result<Self> {
        if let Some(w) = Self::huge(name, capacity) {
            return Ok(w);
        }
        match pooled() {
            Some(w) => Ok(w),
            None => Self::fresh(name, capacity),
        }
    }

    /// A fresh, unmapped memfd of `capacity` bytes (page-rounded), filled
    /// with `pwrite(2)`; its pages are allocated as they are written.
    fn fresh(name: &str, capacity: u64) -> std::io::Result<Self> {
        let fd: OwnedFd =
            rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let file = File::from(fd);
        file.set_len(round_up(capacity.max(1)))?;
        Ok(Self::unmapped(file, capacity))
    }

    /// A segment of `capacity` bytes in an unmapped memfd, filled with
    /// `pwrite(2)`.
    fn unmapped(file: File, capacity: u64) -> Self {
        Self {
            file,
            map: None,
            capacity,
            by_client: false,
        }
    }

    /// A segment for the worker's write pool: `capacity`
    /// bytes whose pages are allocated now (`fallocate(2)`), unmapped, so
    /// filling it later with `pwrite(2)` costs only the copy. Not mapped
    /// ahead: mapping allocated pages zeroes them (three times the
    /// allocation's cost), and unmapping a filled 64 MiB mapping at the
    /// seal took 7-8 ms on the write's path (bench/RESULTS.md, "Writes").
    pub fn preallocated(name: &str, capacity: u64) -> std::io::Result<Self> {
        let fd: OwnedFd =
            rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let size = round_up(capacity.max(1));
        rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, size)?;
        Ok(Self::unmapped(File::from(fd), capacity))
    }

    /// The segment to hand a client instead (a short-circuit write): the
    /// seal at commit treats it as the client's (and no worker mapping
    /// stays).
    pub fn into_client(mut self) -> Self {
        self.map = None;
        self.by_client = true;
        self
    }

    /// Whether the worker fills it through a mapping (huge pages, which
    /// take no `pwrite(2)`): a stream is received straight into
    /// [`SegmentWriter::as_mut_slice`].
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// Copies `data` in at `offset` (within the capacity): through the
    /// mapping when there is one, else with `pwrite(2)`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.capacity)
            .ok_or_else(|| std::io::Error::other("write past the segment's capacity"))?;
        match self.map.as_mut() {
            Some(m) => m[offset as usize..end as usize].copy_from_slice(data),
            None => std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)?,
        }
        Ok(())
    }

    /// The same segment taking `capacity` bytes (at most its page-rounded
    /// size: the pool's segments are of the page-rounded size asked for).
    pub(crate) fn with_capacity(mut self, capacity: u64) -> Self {
        debug_assert!(round_up(capacity.max(1)) == round_up(self.capacity.max(1)));
        self.capacity = capacity;
        self
    }

    /// A segment a co-located client fills through its own mapping (a
    /// short-circuit write). The worker maps nothing: the client may resize
    /// the memfd until it is sealed, and the worker never touches the bytes
    /// before then.
    pub fn create_for_client(name: &str, capacity: u64) -> std::io::Result<Self> {
        Ok(Self::fresh(name, capacity)?.into_client())
    }

    /// The memfd, for handing to the client that fills it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn is_hugetlb(&self) -> bool {
        // hugetlbfs reports its huge page size as the block size.
        rustix::fs::fstatfs(&self.file).is_ok_and(|s| s.f_bsize as u64 == HUGE_PAGE)
    }

    /// The writable bytes (`capacity` of them).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let cap = self.capacity as usize;
        &mut self.map.as_mut().expect("mapped until sealed")[..cap]
    }

    /// Freezes the first `len` bytes into an immutable, sealed segment.
    pub fn seal(self, len: u64) -> std::io::Result<Segment> {
        self.seal_with(len, SealMode::ReadOnly)
    }

    /// As [`SegmentWriter::seal`], sealed as `mode` says.
    pub fn seal_with(mut self, len: u64, mode: SealMode) -> std::io::Result<Segment> {
        assert!(len <= self.capacity, "sealed length within capacity");
        // Hugetlb files only take sizes in whole huge pages.
        let page = if self.file.metadata()?.len() % HUGE_PAGE == 0 && self.is_hugetlb() {
            HUGE_PAGE
        } else {
            PAGE
        };
        let size = len.max(1).div_ceil(page) * page;
        // The writable shared mapping must go first: F_SEAL_WRITE is refused
        // while one exists (in any process: a client that still maps a
        // segment it filled makes this fail with EBUSY), and the file is cut
        // below.
        self.map = None;
        if mode == SealMode::Registrable && !self.by_client && len > 0 {
            return self.seal_registrable(len, size);
        }
        // The write seal first: it fails (EBUSY) while anyone still maps the
        // segment writable, before anything is cut from under that mapping.
        rustix::fs::fcntl_add_seals(&self.file, SealFlags::WRITE)?;
        self.file.set_len(size)?;
        rustix::fs::fcntl_add_seals(
            &self.file,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        let view = if len == 0 {
            View::None
        } else {
            // SAFETY: the memfd is sealed against writes, shrinking and
            // growing, so the mapped bytes can never change or disappear
            // while this read-only mapping lives.
            View::Ro(unsafe { MmapOptions::new().len(size as usize).map(&self.file)? })
        };
        Ok(Segment {
            file: self.file,
            view,
            len,
        })
    }

    /// Cuts the file to `size`, maps it writable again and seals it with
    /// `F_SEAL_FUTURE_WRITE`: only that mapping (never written through)
    /// can write, and it lives as long as the segment.
    fn seal_registrable(self, len: u64, size: u64) -> std::io::Result<Segment> {
        self.file.set_len(size)?;
        // SAFETY: the worker filled this memfd and has handed it to no one
        // (`by_client` is false): no other mapping or process can resize
        // it, and the seals below keep its size fixed for the mapping's
        // life.
        let map = unsafe { MmapOptions::new().len(size as usize).map_mut(&self.file)? };
        rustix::fs::fcntl_add_seals(
            &self.file,
            SealFlags::FUTURE_WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        Ok(Segment {
            file: self.file,
            view: View::Rw(map),
            len,
        })
    }
}

/// How the worker maps a sealed segment.
enum View {
    /// Empty: nothing mapped.
    None,
    Ro(Mmap),
    /// Kept from before an `F_SEAL_FUTURE_WRITE` seal, for registration;
    /// never written through.
    Rw(MmapMut),
}

/// An immutable, sealed block in shared memory.
pub struct Segment {
    file: File,
    view: View,
    len: u64,
}

impl Segment {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        let len = self.len as usize;
        match &self.view {
            View::None => &[],
            View::Ro(m) => &m[..len],
            View::Rw(m) => &m[..len],
        }
    }

    /// The memfd, for handing to a co-located client (short-circuit).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Mapped writable (sealed [`SealMode::Registrable`]): registrable by
    /// a fabric that registers only writable memory.
    pub fn is_writable_mapped(&self) -> bool {
        matches!(self.view, View::Rw(_))
    }

    /// The bytes through a private, writable (copy-on-write) mapping: what
    /// a fabric that registers only writable memory can register when the
    /// segment is mapped read-only. Pinning it for write copies its pages
    /// once; the copies hold the same bytes, as the file is sealed.
    pub fn private_view(&self) -> std::io::Result<PrivateView> {
        if self.len == 0 {
            return Err(std::io::Error::other(
                "an empty segment has no bytes to map",
            ));
        }
        let size = usize::try_from(self.file.metadata()?.len()).map_err(std::io::Error::other)?;
        // SAFETY: the memfd is sealed against shrinking and growing (and
        // writes), so the file's pages under this private mapping can
        // neither change nor disappear; what the mapping makes its own on
        // write belongs to it alone.
        let map = unsafe { MmapOptions::new().len(size).map_copy(&self.file)? };
        Ok(PrivateView {
            map,
            len: self.len as usize,
        })
    }
}

/// The sealed bytes, for registering with a fabric (`crate::remote`): the
/// registration holds the `Arc<Segment>`, so the mapping outlives it.
impl AsRef<[u8]> for Segment {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// A segment's bytes in a private writable mapping ([`Segment::private_view`]),
/// only ever read (by the CPU) and registered.
pub struct PrivateView {
    map: MmapMut,
    len: usize,
}

impl AsRef<[u8]> for PrivateView {
    fn as_ref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugetlb_pool_is_read_from_meminfo() {
        let with =
            "HugePages_Total:      16\nHugePages_Free:        8\nHugepagesize:       2048 kB\n";
        assert_eq!(hugetlb_free_bytes(with), 16 << 20);
        let without =
            "HugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n";
        assert_eq!(hugetlb_free_bytes(without), 0);
        let gigantic = "HugePages_Free:        8\nHugepagesize:    1048576 kB\n";
        assert_eq!(hugetlb_free_bytes(gigantic), 0, "only 2 MiB pages are used");
        assert_eq!(hugetlb_free_bytes(""), 0);
    }

    #[test]
    fn huge_pages_are_used_when_the_host_has_a_pool() {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let pool = hugetlb_free_bytes(&meminfo) >= 2 * HUGE_PAGE;
        if !pool {
            eprintln!("no hugetlb pool on this host: only the 4 KiB path ran");
        }
        // A streamed write's segment: mapped on huge pages, else filled
        // with pwrite; the same bytes either way.
        let mut w = SegmentWriter::create_streamed("s", (2 << 20) + 7, || None).unwrap();
        assert_eq!(w.is_mapped(), pool);
        let data: Vec<u8> = (0..(2 << 20) + 7).map(|i| (i % 251) as u8).collect();
        w.write_at(0, &data[..100]).unwrap();
        w.write_at(100, &data[100..]).unwrap();
        assert!(
            w.write_at((2 << 20) + 7, b"x").is_err(),
            "past the capacity"
        );
        assert_eq!(w.seal(data.len() as u64).unwrap().as_slice(), &data[..]);
        for mode in [SealMode::ReadOnly, SealMode::Registrable] {
            let mut w = SegmentWriter::create("huge", 3 << 20, false).unwrap();
            assert_eq!(
                w.is_hugetlb(),
                pool,
                "huge pages exactly when the pool has room"
            );
            for (i, b) in w.as_mut_slice().iter_mut().enumerate() {
                *b = (i % 253) as u8;
            }
            let s = w.seal_with((3 << 20) - 5, mode).unwrap();
            assert_eq!(s.is_writable_mapped(), mode == SealMode::Registrable);
            assert!(
                s.as_slice()
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == (i % 253) as u8)
            );
            let f = File::from(s.fd().try_clone_to_owned().unwrap());
            use std::os::unix::fs::FileExt;
            assert!(f.write_at(b"x", 0).is_err(), "sealed, huge or not");
            assert!(f.set_len(0).is_err(), "{mode:?}: shrinking is refused");
            let len = f.metadata().unwrap().len() as usize;
            // SAFETY: a mapping attempt on a sealed memfd; it must fail.
            let writable = unsafe { MmapOptions::new().len(len).map_mut(&f) };
            assert!(writable.is_err(), "{mode:?}: no new writable mapping");
            let v = s.private_view().unwrap();
            assert!(v.as_ref() == s.as_slice(), "{mode:?}: the private view");
        }
    }

    #[test]
    fn fill_seal_read() {
        let mut w = SegmentWriter::create("t", 10_000, true).unwrap();
        for (i, b) in w.as_mut_slice().iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let s = w.seal(9_000).unwrap();
        assert_eq!(s.len(), 9_000);
        assert!(
            s.as_slice()
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (i % 251) as u8)
        );
        let empty = SegmentWriter::create("e", 0, false)
            .unwrap()
            .seal(0)
            .unwrap();
        assert!(empty.as_slice().is_empty());
    }

    #[test]
    fn a_sealed_segment_cannot_be_written_or_resized() {
        let mut w = SegmentWriter::create("t", 4096, false).unwrap();
        w.as_mut_slice()[0] = 7;
        let s = w.seal(100).unwrap();
        let f = File::from(s.fd().try_clone_to_owned().unwrap());
        use std::os::unix::fs::FileExt;
        assert!(f.write_at(b"x", 0).is_err(), "write(2) is refused");
        assert!(f.set_len(1 << 20).is_err(), "growing is refused");
        assert!(f.set_len(0).is_err(), "shrinking is refused");
        // SAFETY: mapping attempt on a sealed memfd; it must fail, and if it
        // did not, the mapping would be dropped unused.
        let writable = unsafe { MmapOptions::new().len(4096).map_mut(&f) };
        assert!(writable.is_err(), "a writable shared mapping is refused");
        assert_eq!(s.as_slice()[0], 7);
    }

    /// What a new process handed the fd could try, against a registrable
    /// segment: every way to write is refused.
    fn assert_nothing_new_can_write(s: &Segment) {
        let f = File::from(s.fd().try_clone_to_owned().unwrap());
        use std::os::unix::fs::FileExt;
        assert!(f.write_at(b"x", 0).is_err(), "write(2) is refused");
        assert!(f.set_len(1 << 30).is_err(), "growing is refused");
        assert!(f.set_len(0).is_err(), "shrinking is refused");
        // SAFETY: mapping attempts on a sealed memfd; they must fail, and
        // one that did not would be dropped unused.
        let writable = unsafe { MmapOptions::new().len(4096).map_mut(&f) };
        assert!(
            writable.is_err(),
            "a new writable shared mapping is refused"
        );
        // SAFETY: a read-only shared mapping of the sealed memfd; the
        // mprotect below must fail, so nothing is ever written through it.
        let ro = unsafe { MmapOptions::new().len(4096).map(&f) }.unwrap();
        // SAFETY: changes the protection of the mapping above only.
        let r = unsafe {
            libc::mprotect(
                ro.as_ptr() as *mut libc::c_void,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        assert_eq!(r, -1, "a read-only mapping cannot be made writable");
        let seals = rustix::fs::fcntl_get_seals(&f).unwrap();
        assert!(seals.contains(SealFlags::FUTURE_WRITE | SealFlags::SHRINK | SealFlags::GROW));
    }

    #[test]
    fn a_registrable_segment_stays_mapped_writable_and_nothing_new_writes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut w = SegmentWriter::create("t", 3 << 20, false).unwrap();
        w.as_mut_slice()[..data.len()].copy_from_slice(&data);
        let s = w
            .seal_with(data.len() as u64, SealMode::Registrable)
            .unwrap();
        assert!(s.is_writable_mapped());
        assert_eq!(s.as_slice(), &data[..]);
        assert_nothing_new_can_write(&s);
        // Cut to whole pages like a read-only seal (huge ones on a host
        // with a hugetlb pool).
        let f = File::from(s.fd().try_clone_to_owned().unwrap());
        let len = f.metadata().unwrap().len();
        assert!(len == 12_288 || len == HUGE_PAGE, "{len}");
        // An empty one is sealed read-only (nothing to register).
        let w = SegmentWriter::create("e", 4096, false).unwrap();
        let e = w.seal_with(0, SealMode::Registrable).unwrap();
        assert!(!e.is_writable_mapped() && e.is_empty());
    }

    #[test]
    fn a_segment_a_client_filled_is_sealed_read_only_and_viewed_privately() {
        let w = SegmentWriter::create_for_client("c", 8192).unwrap();
        let f = File::from(w.fd().try_clone_to_owned().unwrap());
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"client bytes", 100).unwrap();
        let s = w.seal_with(5000, SealMode::Registrable).unwrap();
        assert!(!s.is_writable_mapped(), "F_SEAL_WRITE, whatever was asked");
        let seals = rustix::fs::fcntl_get_seals(&f).unwrap();
        assert!(seals.contains(SealFlags::WRITE));
        assert_eq!(&s.as_slice()[100..112], b"client bytes");
        let v = s.private_view().unwrap();
        assert_eq!(
            v.as_ref(),
            s.as_slice(),
            "the private view sees the same bytes"
        );
        assert_eq!(v.as_ref().len(), 5000);
        let empty = SegmentWriter::create("e", 0, false)
            .unwrap()
            .seal(0)
            .unwrap();
        assert!(empty.private_view().is_err());
    }
}
