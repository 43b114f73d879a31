/// A burst of DNS queries over UDP from one source address (a Python socket: what a
/// flooding client or a resolver does), and how the server answered them. For the tests of
/// the DNS server's response rate limiting.
public struct DNSQueryBurst: Sendable {
    public struct Result: Sendable, CustomStringConvertible {
        /// Answers with TC clear.
        public var answers: Int
        /// Answers with TC set (and no records).
        public var truncated: Int
        /// Queries with no answer within the wait.
        public var unanswered: Int
        public var description: String { "\(answers) answers, \(truncated) truncated, \(unanswered) unanswered" }
    }

    public var port: Int
    /// The query's name (type A).
    public var name: String
    public var count: Int
    /// The address the queries come from (any 127.x.y.z works on Linux).
    public var source: String = "127.0.0.1"
    public var server: String = "127.0.0.1"
    /// How long no answer must come before the burst counts the rest as unanswered.
    public var quietTime: Duration

    public init(port: Int, name: String, count: Int, source: String = "127.0.0.1", quietTime: Duration = .seconds(1)) {
        self.port = port
        self.name = name
        self.count = count
        self.source = source
        self.quietTime = quietTime
    }

    /// Sends the queries (in groups of 25 a millisecond apart, so that the server's socket
    /// buffer rarely overflows; on a busy machine it may, and those count as unanswered),
    /// then reads answers until none has come for `quietTime`.
    public func run() async throws -> Result {
        let script = """
            import socket, struct, sys, time
            server, port, source, name, count, quiet = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
            question = b''.join(bytes([len(label)]) + label.encode() for label in name.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((source, 0))
            for i in range(count):
                s.sendto(struct.pack('>HHHHHH', i, 0x0100, 1, 0, 0, 0) + question, (server, port))
                if i % 25 == 24:
                    time.sleep(0.001)
            s.settimeout(quiet)
            seen, answers, truncated = set(), 0, 0
            try:
                while True:
                    data, _ = s.recvfrom(65535)
                    ident, flags = struct.unpack('>HH', data[:4])
                    if ident in seen:
                        continue
                    seen.add(ident)
                    if flags & 0x0200:
                        truncated += 1
                    else:
                        answers += 1
            except socket.timeout:
                pass
            print(answers, truncated, count - answers - truncated)
            """
        let (seconds, attoseconds) = quietTime.components
        let quiet = Double(seconds) + Double(attoseconds) / 1e18
        let output = try await SystemProgram("python3", debianPackage: "python3")
            .run(["-c", script, server, "\(port)", source, name, "\(count)", "\(quiet)"])
        let numbers = output.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        guard numbers.count == 3 else { throw TestSupportError("DNSQueryBurst: unexpected output \(output)") }
        return Result(answers: numbers[0], truncated: numbers[1], unanswered: numbers[2])
    }
}
