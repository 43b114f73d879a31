import Foundation
import PlaneFuzzTargets

// Two builds of one executable (docs/security.md, "Fuzzing"):
//
// - `scripts/fuzz.sh` builds it with `--sanitize fuzzer --sanitize address` and
//   `-DPLANE_LIBFUZZER`: libFuzzer provides `main`, and the target is chosen with the
//   environment variable FUZZ_TARGET.
// - The ordinary build has a `main` of its own that lists the targets, replays inputs
//   (corpus files, crash reproducers) through one, and writes the seed corpus.

#if PLANE_LIBFUZZER

nonisolated(unsafe) var selectedTarget: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    guard let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"], let target = FuzzTargets.named(name) else {
        let names = FuzzTargets.all.map(\.name).joined(separator: ", ")
        FileHandle.standardError.write(Data("plane-fuzz: set FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(64)
    }
    selectedTarget = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let target = selectedTarget else { return 0 }
    target.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#else

@main
struct PlaneFuzz {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "list":
            for target in FuzzTargets.all { print("\(target.name)\t\(target.summary)") }
        case "replay" where arguments.count >= 3:
            guard let target = FuzzTargets.named(arguments[1]) else { fail("no target \(arguments[1]); `plane-fuzz list` names them") }
            var count = 0
            for path in arguments.dropFirst(2) {
                for file in files(at: path) {
                    guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)") }
                    target([UInt8](data))
                    count += 1
                }
            }
            print("\(target.name): \(count) inputs, no finding")
        case "seed" where arguments.count == 2 || arguments.count == 3:
            let written = FuzzSeeds.write(into: arguments[1], goldenFixtures: arguments.count == 3 ? arguments[2] : nil)
            print("wrote \(written) seed inputs into \(arguments[1])/<target>/")
        default:
            fail("usage: plane-fuzz list | replay <target> <file or directory>... | seed <directory> [<golden wire fixtures>]")
        }
    }

    static func files(at path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else { return [path] }
        return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { "\(path)/\($0)" }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("plane-fuzz: \(message)\n".utf8))
        exit(64)
    }
}

#endif
