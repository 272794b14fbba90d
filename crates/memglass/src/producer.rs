//! The producer: owns a session's segments and publishes objects in them.

use crate::layout::{self, FieldEntry, Header, ObjectEntry, RegionHeader, TypeEntry};
use crate::session::{self, Liveness};
use crate::shm::{self, Dir, Mapping};
use crate::types::{Atomicity, ObjectId, ObjectState, Observe, TypeDesc};
use crate::{Error, Result};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Settings of a [`Producer`]; `ProducerOptions::default()` gives the defaults.
#[derive(Clone, Debug)]
pub struct ProducerOptions {
    /// Segment directory; default [`crate::default_dir`].
    pub dir: Option<PathBuf>,
    /// Segments mode 0640 instead of 0600 (the directory must then be made
    /// group-searchable by its owner); default false.
    pub group_readable: bool,
    /// Size of the first data region; default 1 MiB.
    pub first_region_bytes: usize,
    /// Largest data region (each new one doubles, up to this); default 64 MiB.
    pub max_region_bytes: usize,
    /// Type registry capacity; default 256.
    pub max_types: u32,
    /// Field pool capacity (all types together); default 4096.
    pub max_fields: u32,
    /// Object directory capacity; default 4096.
    pub max_objects: u32,
    /// How long a destroyed object's slot and memory stay untouched before
    /// reuse, so observers finish reading it; default 1 s.
    pub grace_period: Duration,
    /// Heartbeat period; default 100 ms. Observers call a live producer
    /// stale after 10 missed heartbeats (at least 1 s).
    pub heartbeat_interval: Duration,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            dir: None,
            group_readable: false,
            first_region_bytes: 1 << 20,
            max_region_bytes: 64 << 20,
            max_types: 256,
            max_fields: 4096,
            max_objects: 4096,
            grace_period: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(100),
        }
    }
}

struct Region {
    map: Arc<Mapping>,
    size: u64,
}

struct FreeBlock {
    region: u32,
    offset: u64,
    size: u64,
    align: u64,
    since_ns: u64,
}

struct State {
    regions: Vec<Region>,
    types: HashMap<String, (u32, TypeDesc)>,
    labels: HashMap<String, ObjectId>,
    free_slots: VecDeque<(u32, u64)>,
    free_blocks: Vec<FreeBlock>,
    shut_down: bool,
}

struct Inner {
    session: String,
    dir: Dir,
    opts: ProducerOptions,
    header: Mapping,
    state: Mutex<State>,
    stop: (Mutex<bool>, Condvar),
}

// SAFETY (for the pointer helpers below): the header mapping is writable,
// at least `segment_size` bytes, and its tables were laid out by
// `layout::header_layout` for the capacities stored in it.
impl Inner {
    fn header(&self) -> &Header {
        // SAFETY: see above.
        unsafe { &*(self.header.ptr as *const Header) }
    }
    fn at<T>(&self, offset: u64, index: u32) -> *mut T {
        self.header.ptr.wrapping_add(offset as usize + index as usize * std::mem::size_of::<T>())
            as *mut T
    }
    fn slot(&self, i: u32) -> &ObjectEntry {
        // SAFETY: see above; i < objects_capacity (callers).
        unsafe { &*self.at::<ObjectEntry>(self.header().objects_offset, i) }
    }
    fn bump(&self) {
        self.header().sequence.fetch_add(1, Ordering::Release);
    }
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session's producer: creates the segments, registers types, creates and
/// destroys objects, beats the heartbeat. Dropping it shuts it down.
pub struct Producer {
    inner: Arc<Inner>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

/// A live object of type `T` (or `[T]`, see [`ArrayHandle`]) in shared
/// memory. Dereferences to the object; dropping it destroys the object.
pub struct Handle<T: ?Sized + 'static> {
    inner: Arc<Inner>,
    _region: Arc<Mapping>,
    ptr: *mut T,
    id: ObjectId,
}

/// A live array of `T` created by [`Producer::create_array`].
pub type ArrayHandle<T> = Handle<[T]>;

// SAFETY: a Handle is a unique owner of its object, like a Box.
unsafe impl<T: ?Sized + Send + 'static> Send for Handle<T> {}
// SAFETY: &Handle only gives &T.
unsafe impl<T: ?Sized + Sync + 'static> Sync for Handle<T> {}

impl<T: ?Sized + 'static> Handle<T> {
    /// Slot and generation of the object.
    pub fn id(&self) -> ObjectId {
        self.id
    }
}

impl<T: ?Sized + 'static> std::ops::Deref for Handle<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: ptr points into a region mapping kept alive by _region,
        // zero-initialised (valid for T, the Observe contract) and owned by
        // this handle only.
        unsafe { &*self.ptr }
    }
}

impl<T: ?Sized + 'static> std::ops::DerefMut for Handle<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; &mut self makes the access unique.
        unsafe { &mut *self.ptr }
    }
}

impl<T: ?Sized + 'static> Drop for Handle<T> {
    fn drop(&mut self) {
        let _ = destroy_id(&self.inner, self.id);
    }
}

/// An object created from a type registered at run time (C ABI, Python):
/// its address and size. Destroy it with [`Producer::destroy_raw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawObject {
    /// Start of the object's bytes (writable, zero-initialised).
    pub ptr: *mut u8,
    /// Size in bytes (type size x count).
    pub len: usize,
    /// Slot and generation.
    pub id: ObjectId,
}

fn my_start_time() -> Result<u64> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    shm::proc_stat(pid)
        .map(|(_, s)| s)
        .ok_or_else(|| Error::Os("cannot read /proc/self/stat".into()))
}

impl Producer {
    /// Creates session `session` in the segment directory: its header
    /// segment (types, fields, object directory) and first data region.
    /// Segments of a dead producer of the same name are removed first (never
    /// reused); a live or stale one gives [`Error::AlreadyExists`].
    pub fn init(session: &str, options: ProducerOptions) -> Result<Producer> {
        shm::validate_name(session)?;
        let o = &options;
        if o.max_types == 0 || o.max_fields == 0 || o.max_objects == 0 {
            return Err(Error::InvalidArgument("capacities must be at least 1".into()));
        }
        if o.max_types > 65_536 || o.max_fields > 1 << 20 || o.max_objects > 1 << 20 {
            return Err(Error::InvalidArgument(
                "capacities: at most 65536 types, 2^20 fields, 2^20 objects".into(),
            ));
        }
        if o.first_region_bytes < 4096 || o.max_region_bytes < o.first_region_bytes {
            return Err(Error::InvalidArgument(
                "first_region_bytes >= 4096 and max_region_bytes >= first_region_bytes".into(),
            ));
        }
        if o.heartbeat_interval.is_zero() {
            return Err(Error::InvalidArgument("heartbeat_interval must be > 0".into()));
        }
        let path = o.dir.clone().unwrap_or_else(shm::default_dir);
        let dir = Dir::open(&path, true, None)?;
        match session::open_header(&dir, session) {
            Ok(m) => {
                // SAFETY: open_header checked the mapping holds a Header.
                let (l, why) = session::judge(unsafe { &*(m.ptr as *const Header) });
                if l != Liveness::Dead {
                    return Err(Error::AlreadyExists(format!(
                        "session {session} is in use by a {} producer (pid {})",
                        l.name(),
                        // SAFETY: as above.
                        unsafe { &*(m.ptr as *const Header) }.producer_pid
                    )));
                }
                let _ = why;
                session::remove_files(&dir, session)?;
            }
            Err(Error::NotFound(_)) => session::remove_files(&dir, session)?,
            Err(_) => session::remove_files(&dir, session)?, // unreadable: dead by definition
        }
        let (t_off, f_off, o_off, size) =
            layout::header_layout(o.max_types, o.max_fields, o.max_objects);
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as u32;
        let tmp = format!(".{session}.header.{pid}");
        let _ = dir.unlink(&tmp);
        let header = shm::create_segment(&dir, &tmp, size as usize, o.group_readable)?;
        let now = shm::now_ns();
        // SAFETY: the fresh mapping is `size` >= 4096 zeroed bytes, ours only.
        unsafe {
            let h = header.ptr as *mut Header;
            (*h).magic = layout::HEADER_MAGIC;
            (*h).version = layout::VERSION;
            (*h).header_size = std::mem::size_of::<Header>() as u32;
            (*h).segment_size = size;
            (*h).heartbeat_ns.store(now, Ordering::Relaxed);
            (*h).heartbeat_interval_ns = o.heartbeat_interval.as_nanos() as u64;
            (*h).created_ns = now;
            (*h).producer_start_time = my_start_time()?;
            (*h).producer_pid = pid;
            (*h).session_name = layout::put_str(session);
            (*h).types_offset = t_off;
            (*h).types_capacity = o.max_types;
            (*h).fields_offset = f_off;
            (*h).fields_capacity = o.max_fields;
            (*h).objects_offset = o_off;
            (*h).objects_capacity = o.max_objects;
        }
        let inner = Arc::new(Inner {
            session: session.to_string(),
            dir,
            opts: options.clone(),
            header,
            state: Mutex::new(State {
                regions: Vec::new(),
                types: HashMap::new(),
                labels: HashMap::new(),
                free_slots: VecDeque::new(),
                free_blocks: Vec::new(),
                shut_down: false,
            }),
            stop: (Mutex::new(false), Condvar::new()),
        });
        {
            let mut st = inner.lock();
            add_region(&inner, &mut st, options.first_region_bytes as u64).inspect_err(|_| {
                let _ = inner.dir.unlink(&tmp);
            })?;
        }
        if let Err(e) = inner.dir.rename(&tmp, &shm::header_name(session)) {
            let _ = session::remove_files(&inner.dir, session);
            let _ = inner.dir.unlink(&tmp);
            return Err(e);
        }
        let hb = Arc::clone(&inner);
        let heartbeat = std::thread::Builder::new()
            .name("memglass-heartbeat".into())
            .spawn(move || {
                let (m, cv) = &hb.stop;
                let mut stop = m.lock().unwrap_or_else(|e| e.into_inner());
                while !*stop {
                    hb.header().heartbeat_ns.store(shm::now_ns(), Ordering::Release);
                    stop = cv
                        .wait_timeout(stop, hb.opts.heartbeat_interval)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            })
            .map_err(|e| Error::Os(format!("spawn heartbeat thread: {e}")))?;
        Ok(Producer { inner, heartbeat: Some(heartbeat) })
    }

    /// The session name.
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    /// Registers `T` (idempotent): its index in the type registry.
    pub fn register<T: Observe>(&self) -> Result<u32> {
        self.register_type(&T::type_desc())
    }

    /// Registers a type described at run time (idempotent for an identical
    /// description; another description under a registered name is an
    /// error). Checks every field lies inside the type, atomics are 1, 2, 4
    /// or 8 bytes and aligned, guard words are 8-byte aligned and inside.
    pub fn register_type(&self, desc: &TypeDesc) -> Result<u32> {
        let inner = &self.inner;
        let mut st = inner.lock();
        if st.shut_down {
            return Err(Error::InvalidArgument("the producer was shut down".into()));
        }
        if let Some((i, d)) = st.types.get(&desc.name) {
            if d == desc {
                return Ok(*i);
            }
            return Err(Error::AlreadyExists(format!(
                "type {} is registered with another layout",
                desc.name
            )));
        }
        check_desc(desc)?;
        let h = inner.header();
        let tcount = h.type_count.load(Ordering::Relaxed);
        let fcount = h.field_count.load(Ordering::Relaxed);
        if tcount >= h.types_capacity {
            return Err(Error::Full(format!("type registry full ({} types)", h.types_capacity)));
        }
        if fcount as u64 + desc.fields.len() as u64 > h.fields_capacity as u64 {
            return Err(Error::Full(format!(
                "field pool full ({} fields, {} more needed)",
                h.fields_capacity,
                desc.fields.len()
            )));
        }
        for (i, f) in desc.fields.iter().enumerate() {
            let e = FieldEntry {
                path: layout::put_str(&f.path),
                offset: f.offset,
                size: f.size() as u32,
                array_len: f.array_len,
                guard_offset: f.guard_offset,
                prim: f.prim as u8,
                atomicity: f.atomicity as u8,
                semantics: f.meta.semantics as u8,
                _pad: [0; 5],
                unit: layout::put_str(&f.meta.unit),
                help: layout::put_str(&f.meta.help),
            };
            // SAFETY: fcount + i < fields_capacity (checked); the entry is
            // unpublished (past field_count), so no observer reads it yet.
            unsafe { inner.at::<FieldEntry>(h.fields_offset, fcount + i as u32).write(e) };
        }
        h.field_count.store(fcount + desc.fields.len() as u32, Ordering::Release);
        let t = TypeEntry {
            name: layout::put_str(&desc.name),
            size: desc.size,
            align: desc.align,
            first_field: fcount,
            field_count: desc.fields.len() as u32,
        };
        // SAFETY: tcount < types_capacity; unpublished entry.
        unsafe { inner.at::<TypeEntry>(h.types_offset, tcount).write(t) };
        h.type_count.store(tcount + 1, Ordering::Release);
        inner.bump();
        st.types.insert(desc.name.clone(), (tcount, desc.clone()));
        Ok(tcount)
    }

    /// Creates a zeroed `T` labelled `label` (unique among live objects).
    pub fn create<T: Observe>(&self, label: &str) -> Result<Handle<T>> {
        let ti = self.register::<T>()?;
        let (raw, region) = create(&self.inner, ti, label, 1)?;
        Ok(Handle {
            inner: Arc::clone(&self.inner),
            _region: region,
            ptr: raw.ptr as *mut T,
            id: raw.id,
        })
    }

    /// Creates `n` >= 1 zeroed `T`s as one object labelled `label`; observers
    /// see element `i`'s fields as `[i].path`.
    pub fn create_array<T: Observe>(&self, label: &str, n: usize) -> Result<ArrayHandle<T>> {
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!("array length {n}")));
        }
        let ti = self.register::<T>()?;
        let (raw, region) = create(&self.inner, ti, label, n as u32)?;
        let ptr = std::ptr::slice_from_raw_parts_mut(raw.ptr as *mut T, n);
        Ok(Handle { inner: Arc::clone(&self.inner), _region: region, ptr, id: raw.id })
    }

    /// Creates `count` elements of registered type `type_index`; the memory
    /// stays mapped until [`Producer::destroy_raw`] or shutdown.
    pub fn create_raw(&self, type_index: u32, label: &str, count: u32) -> Result<RawObject> {
        if count == 0 {
            return Err(Error::InvalidArgument("count must be at least 1".into()));
        }
        create(&self.inner, type_index, label, count).map(|(r, _)| r)
    }

    /// Destroys an object (a [`Handle`] is destroyed by dropping it).
    pub fn destroy<T: ?Sized>(&self, handle: Handle<T>) {
        drop(handle)
    }

    /// Destroys an object made by [`Producer::create_raw`]. Its memory must
    /// not be written afterwards. [`Error::Gone`] if it was already destroyed.
    pub fn destroy_raw(&self, id: ObjectId) -> Result<()> {
        destroy_id(&self.inner, id)
    }

    /// Marks the session shut down (observers see it dead), stops the
    /// heartbeat and removes the segments. Existing observers keep their
    /// mappings; live handles stay valid memory but are no longer visible
    /// to new observers.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    /// Like [`Producer::shutdown`], but keeps this process's mappings (and
    /// so every object's memory) until the `Producer` is dropped: for
    /// bindings whose objects may outlive the call. Idempotent.
    pub fn shutdown_in_place(&mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        {
            let mut st = self.inner.lock();
            if st.shut_down {
                return Ok(());
            }
            st.shut_down = true;
        }
        self.inner.header().flags.fetch_or(layout::FLAG_SHUTDOWN, Ordering::Release);
        self.inner.bump();
        {
            let (m, cv) = &self.inner.stop;
            *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.heartbeat.take() {
            let _ = t.join();
        }
        session::remove_files(&self.inner.dir, &self.inner.session)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn check_desc(d: &TypeDesc) -> Result<()> {
    shm::validate_label("type name", &d.name)?;
    if d.size == 0 || !d.align.is_power_of_two() || d.align > 4096 || d.size % d.align != 0 {
        return Err(Error::InvalidArgument(format!(
            "type {}: size {} and alignment {} (a power of two <= 4096 dividing the size)",
            d.name, d.size, d.align
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &d.fields {
        let what = format!("type {} field {}", d.name, f.path);
        shm::validate_label("field path", &f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(Error::InvalidArgument(format!("{what}: duplicate path")));
        }
        if f.meta.unit.len() >= layout::UNIT_LEN || f.meta.help.len() >= layout::HELP_LEN {
            return Err(Error::InvalidArgument(format!(
                "{what}: unit at most {} bytes, help at most {} bytes",
                layout::UNIT_LEN - 1,
                layout::HELP_LEN - 1
            )));
        }
        let end = f.offset as u64 + f.size() as u64;
        if end > d.size as u64 {
            return Err(Error::InvalidArgument(format!(
                "{what}: bytes {}..{end} outside the type's {} bytes",
                f.offset, d.size
            )));
        }
        match f.atomicity {
            Atomicity::None => {}
            Atomicity::Atomic => {
                let s = f.size();
                if f.array_len != 0 || ![1, 2, 4, 8].contains(&s) || f.offset as usize % s != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "{what}: an atomic field is one aligned value of 1, 2, 4 or 8 bytes"
                    )));
                }
            }
            Atomicity::Seqlock | Atomicity::Locked => {
                let g = f.guard_offset as u64;
                if g % 8 != 0 || g + 8 > d.size as u64 || (g < end && (f.offset as u64) < g + 8) {
                    return Err(Error::InvalidArgument(format!(
                        "{what}: guard word at {g} must be 8-byte aligned, inside the type and not overlap the field"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Creates a new data region of at least `need` bytes and chains it.
fn add_region(inner: &Inner, st: &mut State, need: u64) -> Result<()> {
    let o = &inner.opts;
    let size = match st.regions.last() {
        None => o.first_region_bytes as u64,
        Some(r) => (r.size * 2).min(o.max_region_bytes as u64),
    };
    let size = size.max(layout::round_up(need + layout::REGION_DATA_START, 4096));
    if size > o.max_region_bytes as u64 {
        return Err(Error::Full(format!(
            "an object of {need} bytes does not fit a region of at most {} bytes",
            o.max_region_bytes
        )));
    }
    let id = st.regions.len() as u32 + 1;
    let name = shm::region_name(&inner.session, id);
    let _ = inner.dir.unlink(&name);
    let map = shm::create_segment(&inner.dir, &name, size as usize, o.group_readable)?;
    // SAFETY: a fresh zeroed writable mapping of `size` >= 4096 bytes.
    unsafe {
        let r = map.ptr as *mut RegionHeader;
        (*r).magic = layout::REGION_MAGIC;
        (*r).region_id = id;
        (*r).size = size;
        (*r).used.store(layout::REGION_DATA_START, Ordering::Relaxed);
    }
    fence(Ordering::Release);
    let h = inner.header();
    match st.regions.last() {
        // SAFETY: a region mapping starts with its RegionHeader.
        Some(prev) => unsafe { &*(prev.map.ptr as *const RegionHeader) }
            .next_region
            .store(id, Ordering::Release),
        None => h.first_region.store(id, Ordering::Release),
    }
    h.region_count.store(id, Ordering::Release);
    st.regions.push(Region { map: Arc::new(map), size });
    inner.bump();
    Ok(())
}

/// Memory for `size` bytes aligned to `align`: a reclaimed block past its
/// grace period of exactly that size, else bump-allocated.
fn allocate(inner: &Inner, st: &mut State, size: u64, align: u64) -> Result<(u32, u64)> {
    let now = shm::now_ns();
    let grace = inner.opts.grace_period.as_nanos() as u64;
    if let Some(i) = st
        .free_blocks
        .iter()
        .position(|b| b.size == size && b.align >= align && now.saturating_sub(b.since_ns) >= grace)
    {
        let b = st.free_blocks.swap_remove(i);
        let r = &st.regions[b.region as usize - 1];
        // SAFETY: the block lies inside the region; its old object is
        // destroyed and past the grace period, so no handle writes it.
        unsafe { std::ptr::write_bytes(r.map.ptr.add(b.offset as usize), 0, size as usize) };
        return Ok((b.region, b.offset));
    }
    loop {
        let r = st.regions.last().expect("init made the first region");
        // SAFETY: a region mapping starts with its RegionHeader.
        let rh = unsafe { &*(r.map.ptr as *const RegionHeader) };
        let used = rh.used.load(Ordering::Relaxed);
        let start = layout::round_up(used, align.max(8));
        if start + size <= r.size {
            rh.used.store(start + size, Ordering::Release);
            return Ok((st.regions.len() as u32, start));
        }
        add_region(inner, st, size + align)?;
    }
}

fn create(
    inner: &Arc<Inner>,
    ti: u32,
    label: &str,
    count: u32,
) -> Result<(RawObject, Arc<Mapping>)> {
    shm::validate_label("label", label)?;
    let mut st = inner.lock();
    if st.shut_down {
        return Err(Error::InvalidArgument("the producer was shut down".into()));
    }
    let h = inner.header();
    let Some((_, desc)) = st.types.values().find(|(i, _)| *i == ti) else {
        return Err(Error::NotFound(format!("type index {ti}")));
    };
    let (tsize, talign) = (desc.size as u64, desc.align as u64);
    if st.labels.contains_key(label) {
        return Err(Error::AlreadyExists(format!("an object labelled {label:?} is alive")));
    }
    let size = tsize
        .checked_mul(count as u64)
        .ok_or_else(|| Error::InvalidArgument("object size overflows".into()))?;
    // Pick the slot first so a full directory allocates nothing.
    let now = shm::now_ns();
    let grace = inner.opts.grace_period.as_nanos() as u64;
    let reuse = match st.free_slots.front() {
        Some(&(s, since)) if now.saturating_sub(since) >= grace => Some(s),
        _ => None,
    };
    let used_slots = h.object_slots.load(Ordering::Relaxed);
    if reuse.is_none() && used_slots >= h.objects_capacity {
        return Err(Error::Full(format!(
            "object directory full ({} objects, destroyed ones reused after the grace period)",
            h.objects_capacity
        )));
    }
    let (region, offset) = allocate(inner, &mut st, size, talign)?;
    let slot = match reuse {
        Some(s) => {
            st.free_slots.pop_front();
            s
        }
        None => used_slots,
    };
    let e = inner.slot(slot);
    let old_gen = e.generation.load(Ordering::Relaxed);
    // Slot seqlock: odd generation while the entry is rewritten.
    e.generation.store(old_gen + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    let p = e as *const ObjectEntry as *mut ObjectEntry;
    // SAFETY: slot < capacity; the producer is the only writer (state lock
    // held); observers read the plain fields only between two equal even
    // generations, and the state word is atomic.
    unsafe {
        (*p).type_index = ti;
        (*p).region = region;
        (*p).count = count;
        (*p).offset = offset;
        (*p).size = size;
        (*p).destroyed_ns = 0;
        (*p).label = layout::put_str(label);
    }
    let gen = old_gen + 2;
    e.generation.store(gen, Ordering::Release);
    e.state.store(ObjectState::Alive as u32, Ordering::Release);
    if reuse.is_none() {
        h.object_slots.store(slot + 1, Ordering::Release);
    }
    h.live_objects.fetch_add(1, Ordering::Release);
    inner.bump();
    let id = ObjectId { slot, generation: gen };
    st.labels.insert(label.to_string(), id);
    let r = &st.regions[region as usize - 1];
    let ptr = r.map.ptr.wrapping_add(offset as usize);
    Ok((RawObject { ptr, len: size as usize, id }, Arc::clone(&r.map)))
}

fn destroy_id(inner: &Inner, id: ObjectId) -> Result<()> {
    let mut st = inner.lock();
    let h = inner.header();
    if id.slot >= h.object_slots.load(Ordering::Relaxed) {
        return Err(Error::Gone(format!("no object in slot {}", id.slot)));
    }
    let e = inner.slot(id.slot);
    if e.generation.load(Ordering::Relaxed) != id.generation
        || e.state.load(Ordering::Relaxed) != ObjectState::Alive as u32
    {
        return Err(Error::Gone(format!(
            "object {}/{} was already destroyed",
            id.slot, id.generation
        )));
    }
    let now = shm::now_ns();
    let p = e as *const ObjectEntry as *mut ObjectEntry;
    // SAFETY: plain field of our slot, written under the state lock; read by
    // observers only as information.
    unsafe { (*p).destroyed_ns = now };
    e.state.store(ObjectState::Destroyed as u32, Ordering::Release);
    h.live_objects.fetch_sub(1, Ordering::Release);
    inner.bump();
    // SAFETY: the entry's plain fields are stable while it is Destroyed.
    let (region, offset, size, label) =
        unsafe { ((*p).region, (*p).offset, (*p).size, (*p).label) };
    let align = st.types.values().find(|(i, _)| *i == e.type_index).map_or(8, |(_, d)| d.align);
    st.labels.remove(&layout::get_str(&label));
    st.free_slots.push_back((id.slot, now));
    st.free_blocks.push(FreeBlock { region, offset, size, align: align as u64, since_ns: now });
    Ok(())
}
