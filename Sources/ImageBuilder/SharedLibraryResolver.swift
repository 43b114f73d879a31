import Foundation

/// Finds the shared libraries an executable needs the way `ldd` does: by asking the
/// dynamic loader (it runs `ldd`, which resolves the whole dependency tree).
public enum SharedLibraryResolver {
    /// Absolute host paths of every library and of the dynamic loader; empty for a static
    /// executable.
    public static func libraries(of executable: String) throws(ImageBuilderError) -> [String] {
        let output: String
        let status: Int32
        do {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
            process.arguments = [executable]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            output = String(decoding: data, as: UTF8.self)
            status = process.terminationStatus
        } catch {
            throw ImageBuilderError(.tool, "Could not run ldd (install libc-bin): \(error)")
        }
        if output.contains("not a dynamic executable") || output.contains("statically linked") { return [] }
        guard status == 0 else { throw ImageBuilderError(.tool, "ldd \(executable) failed: \(output)") }
        return try parse(output)
    }

    /// Parses `ldd` output lines such as `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`
    /// and `/lib64/ld-linux-x86-64.so.2 (0x...)`.
    public static func parse(_ output: String) throws(ImageBuilderError) -> [String] {
        var paths: [String] = []
        for rawLine in output.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.contains("=> not found") {
                throw ImageBuilderError(.missingLibrary, "A library the executable needs is missing on this host: \(line)")
            }
            if let arrow = line.range(of: "=> ") {
                let rest = line[arrow.upperBound...]
                let path = rest.split(separator: " ").first.map(String.init) ?? ""
                if path.hasPrefix("/") { paths.append(path) }
            } else if line.hasPrefix("/") {
                paths.append(String(line.split(separator: " ")[0]))
            }
            // Lines like `linux-vdso.so.1 (0x...)` are provided by the kernel.
        }
        var seen = Set<String>()
        return paths.filter { seen.insert($0).inserted }
    }
}
