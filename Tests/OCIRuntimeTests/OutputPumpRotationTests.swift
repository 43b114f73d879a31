import Foundation
import ProcessSupervision
import Synchronization
import Testing

/// The output log's rotation, with a reader opening the log's path all the while: the
/// path names a file at every moment (a follower that started mid-rotation once found no
/// log and ended at once), and nothing written is lost between the two files.
struct OutputPumpRotationTests {
    @Test func theLogPathNamesAFileThroughEveryRotation() throws {
        let directory = NSTemporaryDirectory() + "plane-output-pump-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/output.log"
        let log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        try #require(log >= 0)
        var output: [Int32] = [0, 0], errors: [Int32] = [0, 0]
        try #require(pipe(&output) == 0 && pipe(&errors) == 0)
        close(errors[1])
        // Fewer bytes than a pipe holds, written before the pump reads: one read, many rotations.
        let lines = 6_000
        var written = 0
        for index in 0..<lines {
            let line = Array("line \(index)\n".utf8)
            written += line.withUnsafeBytes { write(output[1], $0.baseAddress, $0.count) }
        }
        close(output[1])
        try #require(written < 65_536)
        var pump = OutputPump(log: log, output: output[0], errors: errors[0], rotation: .init(path: path, maxBytes: 512))

        // A reader that opens the path again and again while the pump rotates.
        let stop = Atomic<Bool>(false)
        let opened = Atomic<Int>(0)
        let missing = Atomic<Int>(0)
        let started = Atomic<Bool>(false)
        let reader = Thread {
            while !stop.load(ordering: .relaxed) {
                started.store(true, ordering: .relaxed)
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                if fd >= 0 {
                    close(fd)
                    opened.wrappingAdd(1, ordering: .relaxed)
                } else {
                    missing.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        reader.start()
        while !started.load(ordering: .relaxed) { usleep(100) }
        pump.drain(until: .now + .seconds(60))
        stop.store(true, ordering: .relaxed)
        while !reader.isFinished { usleep(1000) }
        // The pump's descriptor, not `log`: its rotations closed that one long ago, and the
        // number may be another test's socket by now (closing it crashed a test run in
        // SwiftNIO's selector).
        pump.closeLog()

        #expect(missing.load(ordering: .relaxed) == 0, "opened \(opened.load(ordering: .relaxed)) times")
        #expect(opened.load(ordering: .relaxed) > 0)
        // Bounded: the two files together hold about twice the limit, and the last line is in them.
        let current = try String(contentsOfFile: path, encoding: .isoLatin1)
        let older = try String(contentsOfFile: path + ".1", encoding: .isoLatin1)
        #expect(current.utf8.count <= 512 + 100 && older.utf8.count <= 512 + 100)
        #expect(current.contains("line \(lines - 1)") || older.contains("line \(lines - 1)"))
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(names == ["output.log", "output.log.1"], "\(names)")
    }
}
