import ContainerRuntime
import PlaneCore
import ProcessSupervision
import Testing

/// The `output.log` record format: what the shim writes reads back, and a damaged file
/// (a record longer than any the shim writes, a torn one) neither holds the reader's memory
/// nor hides the records after it.
struct BackendOutputLogTests {
    @Test func recordsReadBackAcrossPieces() {
        let longest = [UInt8](repeating: UInt8(ascii: "x"), count: BackendOutputLog.maximumLineLength)
        let first = BackendOutputLog.encode(time: .min, stream: .stderr, text: longest)
        #expect(first.count == BackendOutputLog.maximumRecordLength + 1)  // with its newline
        let bytes = first + BackendOutputLog.encode(time: 42, stream: .stdout, text: Array("hello".utf8))
        var reader = BackendOutputLog.Reader()
        var lines: [LogLine] = []
        for start in stride(from: 0, to: bytes.count, by: 1000) {
            lines += reader.lines(in: bytes[start..<min(start + 1000, bytes.count)])
        }
        #expect(lines.map(\.text.utf8.count) == [BackendOutputLog.maximumLineLength, 5])
        #expect(lines.map(\.stream) == [.stderr, .stdout])
        #expect(lines.last?.time?.nanosecondsSinceEpoch == 42)
    }

    @Test func anOverlongRecordIsSkippedToItsNewline() {
        var reader = BackendOutputLog.Reader()
        var lines = reader.lines(in: BackendOutputLog.encode(time: 1, stream: .stdout, text: Array("before".utf8)))
        // A record ten times longer than the longest the shim writes, in pieces: it is not
        // held (nor handed out) but skipped.
        let garbage = Array("5 o ".utf8) + [UInt8](repeating: UInt8(ascii: "7"), count: 10 * BackendOutputLog.maximumRecordLength)
        for start in stride(from: 0, to: garbage.count, by: 4096) {
            lines += reader.lines(in: garbage[start..<min(start + 4096, garbage.count)])
        }
        lines += reader.lines(in: Array("\n".utf8) + BackendOutputLog.encode(time: 2, stream: .stdout, text: Array("after".utf8)))
        // (Lengths, not texts: a failure prints the overlong line otherwise.)
        #expect(lines.map(\.text.utf8.count) == [6, 5])
        #expect(lines.last?.text == "after")
    }

    @Test func tornRecordsAreDropped() {
        var reader = BackendOutputLog.Reader()
        let lines = reader.lines(in: Array("12 o\nnot a record\n99 x text\n3 e fine\n".utf8))
        #expect(lines.map(\.text) == ["fine"])
    }
}
