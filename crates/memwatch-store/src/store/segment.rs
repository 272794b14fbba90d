//! Connecting to, creating, validating and unlinking a store's segment.

use super::*;

impl Store {
    /// Creates the store `name` with an arena of `capacity` bytes and the
    /// given full policy, or opens it if it exists (then its own capacity and
    /// policy apply; see [`Store::capacity`] and [`Store::policy`]).
    pub fn connect(name: &str, capacity: u64, policy: FullPolicy) -> Result<Store> {
        Store::connect_with(name, &Options::new(capacity, policy))
    }

    /// [`Store::connect`] with all creation options.
    pub fn connect_with(name: &str, opts: &Options) -> Result<Store> {
        let layout = opts.layout()?;
        Store::attach(name, Some((layout, opts.policy)))
    }

    /// Opens an existing store; [`Error::NotFound`] if there is none.
    pub fn open(name: &str) -> Result<Store> {
        Store::attach(name, None)
    }

    /// Removes the store's name. Processes that have it open keep working on
    /// it; the memory is freed when the last one closes.
    pub fn unlink(name: &str) -> Result<()> {
        let c = shm::shm_name(name)?;
        shm::unlink(&c, name)
    }

    /// Closes this handle (same as dropping it). Outstanding `ValueRef`s
    /// borrow the store, so they are gone by then.
    pub fn close(self) {}

    pub(super) fn attach(name: &str, create: Option<(Layout, FullPolicy)>) -> Result<Store> {
        let cname = shm::shm_name(name)?;
        let mode = if create.is_some() { OpenMode::CreateOrOpen } else { OpenMode::OpenOnly };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let (fd, _created) = shm::open(
                &cname,
                name,
                match mode {
                    OpenMode::CreateOrOpen => OpenMode::CreateOrOpen,
                    OpenMode::OpenOnly => OpenMode::OpenOnly,
                },
            )?;
            shm::lock_exclusive(&fd)?;
            let size = shm::size(&fd)?;
            if size > 0 && size < 8 {
                shm::unlock(&fd);
                return Err(Error::Truncated {
                    name: name.to_string(),
                    size,
                    expected: Layout::compute(MIN_CAPACITY, 1, 1).total_size,
                });
            }
            let initialized = size >= 8 && {
                let m = Mapping::map(&fd, 8.max(size.min(4096)) as usize)?;
                // SAFETY: the mapping is at least 8 bytes and page aligned.
                let magic = unsafe { &*(m.ptr as *const AtomicU64) }.load(Acquire);
                magic != 0
            };
            if initialized {
                let r = Store::validate_and_map(&fd, name, size);
                shm::unlock(&fd);
                return r;
            }
            match create {
                Some((layout, policy)) => {
                    let r = Store::initialize(&fd, name, layout, policy);
                    shm::unlock(&fd);
                    return r;
                }
                None => {
                    shm::unlock(&fd);
                    drop(fd);
                    // Size 0: the creator may not have taken the init lock yet.
                    // Sized but no magic: its creator died while initializing.
                    if size > 0 || Instant::now() > deadline {
                        return Err(Error::NotInitialized(name.to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    pub(super) fn initialize(
        fd: &shm::Fd,
        name: &str,
        layout: Layout,
        policy: FullPolicy,
    ) -> Result<Store> {
        shm::truncate(fd, 0)?;
        shm::truncate(fd, layout.total_size)?;
        let map = Mapping::map(fd, layout.total_size as usize)?;
        let store = Store { map, name: name.to_string(), layout, policy, shard: shard_of_pid() };
        let h = store.header();
        h.version.store(VERSION, Relaxed);
        h.header_size.store(layout.header_size as u32, Relaxed);
        h.total_size.store(layout.total_size, Relaxed);
        h.pins_off.store(layout.pins_off, Relaxed);
        h.buckets_off.store(layout.buckets_off, Relaxed);
        h.slots_off.store(layout.slots_off, Relaxed);
        h.arena_off.store(layout.arena_off, Relaxed);
        h.arena_size.store(layout.arena_size, Relaxed);
        h.slot_count.store(layout.slot_count, Relaxed);
        h.bucket_count.store(layout.bucket_count, Relaxed);
        h.max_key_len.store(layout.max_key_len, Relaxed);
        h.policy.store(policy as u32, Relaxed);
        h.created_at.store(now_ns(), Relaxed);
        h.layout_check.store(layout.check(VERSION, policy as u32), Relaxed);
        store.init_mutex()?;
        for b in 0..layout.bucket_count {
            store.bucket(b).store(NIL, Relaxed);
        }
        for i in 0..PIN_RECORDS {
            let p = store.pin(i);
            p.owner.store(0, Relaxed);
            p.block_off.store(NIL64, Relaxed);
            p.block_size.store(0, Relaxed);
        }
        for i in 0..layout.slot_count {
            let s = store.slot(i);
            s.seq.store(0, Relaxed);
            s.state.store(SLOT_FREE, Relaxed);
            s.next.store(NIL, Relaxed);
            s.lru_prev.store(NIL, Relaxed);
            s.lru_next.store(NIL, Relaxed);
        }
        // Everything else is derived: build it the way recovery does.
        store.rebuild();
        h.index_seq.0.store(0, Relaxed);
        h.magic.store(MAGIC, Release);
        Ok(store)
    }

    pub(super) fn init_mutex(&self) -> Result<()> {
        let m = self.header().lock.0.get();
        // SAFETY: attr is initialized by pthread_mutexattr_init before use and
        // destroyed after; `m` points into our live mapping, and no other
        // process uses the mutex yet (we hold the init flock and magic is 0).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            if libc::pthread_mutexattr_init(&mut attr) != 0 {
                return Err(Error::os("pthread_mutexattr_init"));
            }
            let r1 = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            let r2 = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            let r3 = libc::pthread_mutex_init(m, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            for (r, op) in [
                (r1, "pthread_mutexattr_setpshared"),
                (r2, "pthread_mutexattr_setrobust"),
                (r3, "pthread_mutex_init"),
            ] {
                if r != 0 {
                    return Err(Error::os_code(op, r));
                }
            }
        }
        Ok(())
    }

    pub(super) fn validate_and_map(fd: &shm::Fd, name: &str, size: u64) -> Result<Store> {
        let corrupt = |detail: String| Error::Corrupt { name: name.to_string(), detail };
        let hsize = round_up(std::mem::size_of::<Header>() as u64, ALIGN_PAGE);
        // Map what is there (at least the header page) to read the header.
        let peek = Mapping::map(fd, size.min(hsize) as usize)?;
        // SAFETY: the mapping is at least 8 bytes long and page aligned.
        let magic = unsafe { &*(peek.ptr as *const AtomicU64) }.load(Acquire);
        if magic != MAGIC {
            return Err(Error::BadMagic { name: name.to_string(), found: magic });
        }
        if size < 16 {
            return Err(Error::Truncated { name: name.to_string(), size, expected: hsize });
        }
        // SAFETY: offset 8 is inside the mapping (size >= 16) and 4-aligned.
        let version = unsafe { &*(peek.ptr.add(8) as *const AtomicU32) }.load(Relaxed);
        if version != VERSION {
            return Err(Error::VersionMismatch {
                name: name.to_string(),
                found: version,
                expected: VERSION,
            });
        }
        if size < hsize {
            return Err(Error::Truncated { name: name.to_string(), size, expected: hsize });
        }
        // SAFETY: the mapping covers a whole Header (size >= hsize), is page
        // aligned, and every Header field is an atomic, valid for any bits.
        let h = unsafe { &*(peek.ptr as *const Header) };
        let arena_size = h.arena_size.load(Relaxed);
        let slots = h.slot_count.load(Relaxed) as u64;
        let max_key = h.max_key_len.load(Relaxed);
        let policy_raw = h.policy.load(Relaxed);
        if !(MIN_CAPACITY..=MAX_CAPACITY + BLOCK_ALIGN).contains(&arena_size)
            || arena_size % BLOCK_ALIGN != 0
        {
            return Err(corrupt(format!("arena size {arena_size} out of range")));
        }
        if !(1..=MAX_SLOTS).contains(&slots) {
            return Err(corrupt(format!("slot count {slots} out of range")));
        }
        if !(1..=MAX_KEY_LIMIT).contains(&max_key) {
            return Err(corrupt(format!("key limit {max_key} out of range")));
        }
        let policy = FullPolicy::from_u32(policy_raw)
            .ok_or_else(|| corrupt(format!("unknown full policy {policy_raw}")))?;
        let layout = Layout::compute(arena_size, slots, max_key);
        let stored = Layout {
            header_size: h.header_size.load(Relaxed) as u64,
            pins_off: h.pins_off.load(Relaxed),
            buckets_off: h.buckets_off.load(Relaxed),
            slots_off: h.slots_off.load(Relaxed),
            arena_off: h.arena_off.load(Relaxed),
            arena_size,
            total_size: h.total_size.load(Relaxed),
            slot_count: slots as u32,
            bucket_count: h.bucket_count.load(Relaxed),
            max_key_len: max_key,
        };
        if stored != layout {
            return Err(corrupt(format!(
                "layout fields do not match: stored {stored:?}, expected {layout:?}"
            )));
        }
        if h.layout_check.load(Relaxed) != layout.check(VERSION, policy_raw) {
            return Err(corrupt("header checksum mismatch".to_string()));
        }
        if size < layout.total_size {
            return Err(Error::Truncated {
                name: name.to_string(),
                size,
                expected: layout.total_size,
            });
        }
        drop(peek);
        let map = Mapping::map(fd, layout.total_size as usize)?;
        Ok(Store { map, name: name.to_string(), layout, policy, shard: shard_of_pid() })
    }
}
