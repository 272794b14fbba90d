//! Writer location, the resolving half (never in the signal handler): maps
//! captured addresses to module + offset (dl_iterate_phdr: executable, PIE,
//! shared libraries, vdso) and to function, file and line with addr2line
//! (DWARF, else the ELF symbol table), caching both the opened modules and
//! every resolved address.

use std::collections::HashMap;
use std::ffi::CStr;

use crate::types::Frame;

/// A loaded module's segment: [start, end) at run time, `bias` = run-time
/// address minus the ELF address.
#[derive(Clone, Debug)]
struct Segment {
    start: u64,
    end: u64,
    bias: u64,
    module: usize,
}

/// Resolved addresses kept before the cache is cleared.
const CACHE_LIMIT: usize = 1 << 16;

/// Resolves addresses to frames, with caches.
#[derive(Default)]
pub struct Symbolizer {
    segments: Vec<Segment>,
    /// Module paths ("" = unknown file, e.g. the vdso), by index.
    paths: Vec<String>,
    /// Opened modules by index (None: no readable file or no ELF).
    loaders: HashMap<usize, Option<addr2line::Loader>>,
    /// Address -> frames (innermost first; several when inlined).
    cache: HashMap<u64, Vec<Frame>>,
    /// Module list refreshes so far (a lookup outside every module refreshes
    /// when modules were loaded or unloaded since the last one).
    pub refreshes: u64,
    /// The loader's (adds, subs) counters at the last refresh.
    generation: Option<(u64, u64)>,
}

// SAFETY: the loaders hold memory maps and parsed DWARF only; the symbolizer
// is used under one mutex at a time.
unsafe impl Send for Symbolizer {}

unsafe extern "C" fn collect_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: data is the &mut Vec passed to dl_iterate_phdr below; info is
    // valid for the duration of the callback, with dlpi_phnum headers.
    unsafe {
        let out = &mut *(data as *mut Vec<(String, u64, u64, u64)>);
        let info = &*info;
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            CStr::from_ptr(info.dlpi_name).to_string_lossy().into_owned()
        };
        let bias = info.dlpi_addr;
        for i in 0..info.dlpi_phnum as usize {
            let ph = &*info.dlpi_phdr.add(i);
            if ph.p_type == libc::PT_LOAD {
                let start = bias.wrapping_add(ph.p_vaddr);
                out.push((name.clone(), start, start + ph.p_memsz, bias));
            }
        }
    }
    0
}

unsafe extern "C" fn read_generation(
    info: *mut libc::dl_phdr_info,
    size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: data is the &mut Option passed by `generation`; info is valid
    // for the callback and holds dlpi_adds/dlpi_subs when `size` covers them.
    unsafe {
        let out = &mut *(data as *mut Option<(u64, u64)>);
        let info = &*info;
        if size >= std::mem::size_of::<libc::dl_phdr_info>() {
            *out = Some((info.dlpi_adds, info.dlpi_subs));
        }
    }
    1
}

/// How many modules the dynamic loader ever loaded and unloaded: an address
/// outside every module (JIT code, an interpreter's generated code) needs no
/// refresh while these are unchanged. None when the loader does not say.
fn generation() -> Option<(u64, u64)> {
    let mut out: Option<(u64, u64)> = None;
    // SAFETY: the callback only reads the first module's counters into `out`.
    unsafe { libc::dl_iterate_phdr(Some(read_generation), (&mut out as *mut Option<_>).cast()) };
    out
}

fn main_executable() -> String {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Symbolizer {
    /// An empty symbolizer (modules are listed on first use).
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// Lists the loaded modules again and drops every cache.
    fn refresh(&mut self) {
        self.generation = generation();
        let mut raw: Vec<(String, u64, u64, u64)> = Vec::new();
        // SAFETY: the callback only reads the headers and pushes to `raw`.
        unsafe { libc::dl_iterate_phdr(Some(collect_segments), (&mut raw as *mut Vec<_>).cast()) };
        self.paths.clear();
        self.segments.clear();
        self.loaders.clear();
        self.cache.clear();
        let mut index: HashMap<String, usize> = HashMap::new();
        let exe = main_executable();
        for (name, start, end, bias) in raw {
            let path = if name.is_empty() {
                exe.clone()
            } else if name.starts_with('/') {
                name
            } else {
                // The vdso ("linux-vdso.so.1") has no file.
                format!("[{name}]")
            };
            let module = *index.entry(path.clone()).or_insert_with(|| {
                self.paths.push(path);
                self.paths.len() - 1
            });
            self.segments.push(Segment { start, end, bias, module });
        }
        self.segments.sort_by_key(|s| s.start);
        self.refreshes += 1;
    }

    fn segment_of(&self, addr: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.start <= addr);
        self.segments[..i].last().filter(|s| addr < s.end)
    }

    /// Frames for one captured address (innermost first: inlined frames,
    /// then the function holding `addr`). `addr` is the exact address to
    /// look up (callers pass return address - 1).
    pub fn resolve(&mut self, addr: u64) -> Vec<Frame> {
        if let Some(hit) = self.cache.get(&addr) {
            return hit.clone();
        }
        if self.segment_of(addr).is_none()
            && (self.generation.is_none() || generation() != self.generation)
        {
            // A module loaded since the last refresh may hold it; else it is
            // anonymous code (JIT, interpreter): refreshing would only drop
            // every opened module's DWARF.
            self.refresh();
        }
        let frames = match self.segment_of(addr).cloned() {
            Some(seg) => self.resolve_in(&seg, addr),
            None => vec![Frame { ip: addr, module_offset: addr, ..Frame::default() }],
        };
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(addr, frames.clone());
        frames
    }

    fn resolve_in(&mut self, seg: &Segment, addr: u64) -> Vec<Frame> {
        let path = self.paths[seg.module].clone();
        let offset = addr.wrapping_sub(seg.bias);
        let base =
            Frame { ip: addr, module: path.clone(), module_offset: offset, ..Frame::default() };
        let loader = self
            .loaders
            .entry(seg.module)
            .or_insert_with(|| {
                if path.starts_with('[') {
                    None
                } else {
                    addr2line::Loader::new(&path).ok()
                }
            })
            .as_ref();
        let Some(loader) = loader else { return vec![base] };
        let mut out = Vec::new();
        if let Ok(mut iter) = loader.find_frames(offset) {
            while let Ok(Some(f)) = iter.next() {
                let mut frame = base.clone();
                if let Some(name) = &f.function {
                    frame.function = name.demangle().map(|s| s.into_owned()).unwrap_or_default();
                }
                if let Some(loc) = &f.location {
                    frame.file = loc.file.unwrap_or("").to_string();
                    frame.line = loc.line.unwrap_or(0);
                }
                out.push(frame);
            }
        }
        let n = out.len();
        for (i, f) in out.iter_mut().enumerate() {
            f.inlined = i + 1 < n;
        }
        if out.iter().all(|f| f.function.is_empty()) {
            // No DWARF here: the symbol table (or dynamic symbols) may still
            // name the function; a stripped module gives module + offset only.
            let mut frame = out.pop().unwrap_or(base);
            if let Some(sym) = loader.find_symbol(offset) {
                frame.function = addr2line::demangle_auto(sym.into(), None).into_owned();
            }
            out = vec![frame];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_code_addresses_do_not_drop_the_opened_modules() {
        // SAFETY: a fresh private anonymous mapping, only its address is used.
        let anon = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(anon, libc::MAP_FAILED);
        let mut s = Symbolizer::new();
        let here = anonymous_code_addresses_do_not_drop_the_opened_modules as *const () as u64;
        assert!(!s.resolve(here)[0].module.is_empty());
        let refreshes = s.refreshes;
        for i in 0..100 {
            let f = s.resolve(anon as u64 + i);
            assert_eq!((f.len(), f[0].module.as_str()), (1, ""));
        }
        assert_eq!(s.refreshes, refreshes, "no module was loaded: no refresh");
        assert!(s.loaders.values().any(|l| l.is_some()), "the test binary stays open");
        // SAFETY: mapped above.
        unsafe { libc::munmap(anon, 4096) };
    }
}
