import ArgumentParser
import NATS

/// `--nats` as every NATS-using command takes it: one or more comma-separated URLs
/// `nats://[token@|user:password@]host[:port]`; the port is honoured (v0.3.10 dropped it).
struct NATSOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("NATS server URL(s), comma-separated: nats://[token@|user:password@]host[:port].", valueName: "url"))
    var nats: String = "nats://127.0.0.1:4222"

    @Option(name: .long, help: ArgumentHelp("PEM file of the CA that signed the NATS server's TLS certificate (enables TLS).", valueName: "path"))
    var natsCA: String?

    @Option(name: .long, help: ArgumentHelp("Prefix of reply subjects (default _INBOX); set it where NATS permissions give each user its own inbox.", valueName: "prefix"))
    var natsInboxPrefix: String?

    func clientConfiguration(name: String) throws -> NATSClientConfiguration {
        let urls = nats.split(separator: ",").map { String($0) }
        var config = try NATSClientConfiguration(urls: urls, name: name)
        if let natsCA { config.tls = .init(caFile: natsCA, required: true) }
        if let natsInboxPrefix {
            guard NATSInboxPrefix.isValid(natsInboxPrefix) else {
                throw ValidationError("--nats-inbox-prefix must be subject tokens of letters, digits, '_' and '-' separated by '.'")
            }
            config.inboxPrefix = natsInboxPrefix
        }
        return config
    }
}
