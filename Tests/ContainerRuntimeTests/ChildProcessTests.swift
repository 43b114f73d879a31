import Foundation
import PlaneTestSupport
import Testing

/// The tests' own process starter: an executable that is busy being written (the README's
/// test links `plane` again while other suites start it) is started once it is free.
struct ChildProcessTests {
    @Test func aBusyExecutableIsStartedOnceItIsFree() async throws {
        let directory = try TestEnvironment.temporaryDirectory("busy-executable")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/tool"
        try "#!/bin/sh\necho started\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        // Held open for writing for a second, as a linker writing it does: exec fails with ETXTBSY.
        let writer = open(path, O_WRONLY | O_CLOEXEC)
        try #require(writer >= 0)
        let released = Task.detached {
            try? await Task.sleep(for: .seconds(1))
            close(writer)
        }
        let started = ContinuousClock.now
        let child = try ChildProcess(path)
        #expect(await child.waitForExit(timeout: .seconds(30)) == 0)
        #expect(child.output.contains("started"))
        #expect(ContinuousClock.now - started >= .milliseconds(500), "it was started while still busy")
        await released.value
    }
}
