// Names the managed frames of located writes on Mono. The engine captures
// them in its signal handler (memwatch_enable_mono_frames) as bare JIT code
// addresses; Mono's naming functions need a thread attached to Mono, which
// the thread converting an event always is (a CheckChanges caller, or the
// delivery thread running a handler).

using System;
using System.Runtime.InteropServices;

namespace MemWatch
{
    /// <summary>Mono's JIT info and debug info lookups, through the runtime's own exports.</summary>
    internal static class MonoFrames
    {
        private const string Runtime = "__Internal";

        [StructLayout(LayoutKind.Sequential)]
        private struct SourceLocation
        {
            public IntPtr source_file;
            public uint row;
            public uint column;
            public uint il_offset;
        }

        [DllImport(Runtime)] private static extern IntPtr mono_domain_get();
        [DllImport(Runtime)] private static extern IntPtr mono_jit_info_table_find(IntPtr domain, IntPtr addr);
        [DllImport(Runtime)] private static extern IntPtr mono_jit_info_get_method(IntPtr ji);
        [DllImport(Runtime)] private static extern IntPtr mono_jit_info_get_code_start(IntPtr ji);
        [DllImport(Runtime)] private static extern IntPtr mono_method_full_name(IntPtr method, int signature);
        [DllImport(Runtime)] private static extern void mono_free(IntPtr p);
        [DllImport(Runtime)] private static extern IntPtr mono_debug_lookup_source_location(IntPtr method, uint address, IntPtr domain);
        [DllImport(Runtime)] private static extern void mono_debug_free_source_location(IntPtr location);

        /// <summary>False once the runtime turned out not to be Mono (CoreCLR has no such exports).</summary>
        private static bool s_available = Type.GetType("Mono.Runtime") != null;

        /// <summary>
        /// The managed method at JIT address <paramref name="ip"/>: "Namespace.Class:Method (args)",
        /// with file and line when Mono runs with --debug and the assembly has debug info.
        /// False when the address is not managed code.
        /// </summary>
        internal static bool TryName(ulong ip, out string function, out string file, out int line, out ulong offset)
        {
            function = file = string.Empty;
            line = 0;
            offset = 0;
            if (!s_available || ip == 0) return false;
            try
            {
                IntPtr domain = mono_domain_get();
                IntPtr ji = mono_jit_info_table_find(domain, new IntPtr(unchecked((long)ip)));
                if (ji == IntPtr.Zero) return false;
                IntPtr method = mono_jit_info_get_method(ji);
                if (method == IntPtr.Zero) return false;
                offset = ip - unchecked((ulong)mono_jit_info_get_code_start(ji).ToInt64());
                IntPtr name = mono_method_full_name(method, 1);
                function = Utf8.FromNative(name) ?? string.Empty;
                mono_free(name);
                IntPtr loc = mono_debug_lookup_source_location(method, checked((uint)offset), domain);
                if (loc != IntPtr.Zero)
                {
                    var l = (SourceLocation)Marshal.PtrToStructure(loc, typeof(SourceLocation));
                    file = Utf8.FromNative(l.source_file) ?? string.Empty;
                    line = unchecked((int)l.row);
                    mono_debug_free_source_location(loc);
                }
                return function.Length > 0;
            }
            catch (EntryPointNotFoundException)
            {
                s_available = false;
                return false;
            }
            catch (DllNotFoundException)
            {
                s_available = false;
                return false;
            }
        }
    }
}
