// plane-test-server: the backend Plane's tests and demo run (the analogue of Plane's own
// test image). See TestServer.swift for what it answers.
//
// SIGTERM: blocked here on the main thread before any other thread exists (threads inherit
// the mask), then taken with `sigwait` by the main thread itself, so it is handled the same
// way whether the server is PID 1 in a container or not. `IGNORE_SIGTERM=1` ignores it.
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

let environment = ProcessInfo.processInfo.environment
switch environment["PLANE_PROBE"] {
case "sandbox": SandboxProbes.runSandboxProbe()
case "sleep": SandboxProbes.runSleepProbe()
case "limits": SandboxProbes.runLimitsProbe()
default: break
}
let ignoreSIGTERM = environment["IGNORE_SIGTERM"] == "1"
var terminationSignals = sigset_t()
sigemptyset(&terminationSignals)
sigaddset(&terminationSignals, SIGTERM)
if ignoreSIGTERM {
    signal(SIGTERM, SIG_IGN)
} else {
    pthread_sigmask(SIG_BLOCK, &terminationSignals, nil)
}

Task.detached {
    do {
        try await TestServer(environment: environment).run()
        exit(0)
    } catch {
        say("plane-test-server: \(error)")
        exit(1)
    }
}

if ignoreSIGTERM {
    while true { pause() }
}
var received: Int32 = 0
while sigwait(&terminationSignals, &received) == 0 {
    if received == SIGTERM {
        say("plane-test-server: SIGTERM, exiting")
        exit(0)
    }
}
