import PlaneCore
import Testing

/// `BoundedFile.readGenerated`: files the kernel makes are read to their end.
struct BoundedFileTests {
    /// A process's memory map is far longer than the first page Foundation's readers stop
    /// at (about 4 KiB); its last entries come at the very end.
    @Test func aGeneratedFileIsReadToItsEnd() throws {
        let text = try #require(BoundedFile.generatedText("/proc/self/maps"))
        #expect(text.utf8.count > 16 << 10, "\(text.utf8.count) bytes")
        let lines = text.split(separator: "\n")
        #expect(lines.contains { $0.hasSuffix("[stack]") }, "the stack's entry, near the end, is missing")
        #expect(text.hasSuffix("\n"))
    }

    @Test func missingLargeAndNonRegularFilesAreErrors() {
        #expect(throws: BoundedFile.Failure.missing) { try BoundedFile.readGenerated("/proc/self/no-such-file") }
        #expect(throws: BoundedFile.Failure.notRegular) { try BoundedFile.readGenerated("/proc/self") }
        #expect(throws: BoundedFile.Failure.self) { try BoundedFile.readGenerated("/proc/self/maps", limit: 1024) }
        #expect(BoundedFile.generatedText("/proc/self/no-such-file") == nil)
    }
}
