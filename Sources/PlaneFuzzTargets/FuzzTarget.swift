/// One parser of outside bytes, exercised with arbitrary input: `run` must return for every
/// input, whatever it is. A trap (an overflow, an index out of range, a failed check of the
/// invariants a target asserts with `FuzzTarget.require`) is a finding.
///
/// The same targets run under libFuzzer (`make fuzz`, the `plane-fuzz` executable built with
/// `-sanitize=fuzzer,address`), over their seed corpus in `make test`, and in the unit tests
/// (`PlaneFuzzTests` replays `Tests/FuzzCorpus/<name>/`, where every input a fuzzer found
/// to crash a target is kept).
public struct FuzzTarget: Sendable {
    public let name: String
    /// What the target feeds and what it checks.
    public let summary: String
    public let run: @Sendable (UnsafeRawBufferPointer) -> Void

    public init(_ name: String, _ summary: String, run: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) {
        self.name = name
        self.summary = summary
        self.run = run
    }

    /// Runs the target on `bytes`.
    public func callAsFunction(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { run($0) }
    }

    /// An invariant of a target: its failure is a finding (a trap the fuzzer reports).
    public static func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
        if !condition() { fatalError("fuzz invariant: \(message())") }
    }
}

/// Every target, by name.
public enum FuzzTargets {
    public static let all: [FuzzTarget] = [
        HTTPFuzzTargets.request, HTTPFuzzTargets.response,
        DNSFuzzTargets.message, DNSFuzzTargets.responder, DNSFuzzTargets.stream,
        WireFuzzTargets.messages, WireFuzzTargets.httpSpawn,
        NATSFuzzTarget.protocolParser,
        LayerFuzzTarget.tarLayer,
        OCIImageFuzzTarget.imageDocuments, OCIImageFuzzTarget.registryAnswers,
        PluginFrameFuzzTarget.frames,
        ConfigFuzzTarget.toml,
        ACMEFuzzTarget.responses,
        DockerFuzzTarget.streams,
        ProxyExchangeFuzzTarget.exchange,
    ]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// Reading a fuzzer's input as several values: a few leading bytes steer the target (chunk
/// sizes, a choice of decoder), the rest is the payload.
struct FuzzInput {
    private let bytes: UnsafeRawBufferPointer
    private(set) var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    /// The next byte, 0 once the input is used up.
    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// The rest of the input.
    mutating func rest() -> [UInt8] {
        defer { position = bytes.count }
        return Array(bytes[position...])
    }

    /// The rest, cut into pieces of 1 to `maxPiece` bytes as `sizes` says (cycled): the
    /// chunking network reads arrive in.
    static func pieces(_ payload: [UInt8], sizes: [UInt8], maxPiece: Int = 64) -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var offset = 0
        var index = 0
        while offset < payload.count {
            let size = sizes.isEmpty ? payload.count : 1 + Int(sizes[index % sizes.count]) % maxPiece
            result.append(payload[offset..<min(payload.count, offset + size)])
            offset += size
            index += 1
        }
        return result
    }

    /// Splits `payload` at NUL bytes into at most `count` parts (missing parts are empty).
    static func parts(_ payload: [UInt8], _ count: Int) -> [[UInt8]] {
        var parts = payload.split(separator: 0, maxSplits: count - 1, omittingEmptySubsequences: false).map(Array.init)
        while parts.count < count { parts.append([]) }
        return parts
    }
}
