import Foundation

/// A throwaway CA and a server certificate (for 127.0.0.1 / localhost unless other names
/// are given), made with openssl.
public struct TestCertificates: Sendable {
    public let caCertificate: String
    public let serverCertificate: String
    public let serverKey: String

    public static func generate(in directory: String, names: [String] = ["IP:127.0.0.1", "DNS:localhost"]) async throws -> TestCertificates {
        let openssl = SystemProgram.openssl
        if !FileManager.default.fileExists(atPath: "\(directory)/ca.pem") {
            try await openssl.run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                   "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Plane Test CA",
                                   "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], in: directory)
        }
        try await openssl.run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                               "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], in: directory)
        try "subjectAltName=\(names.joined(separator: ","))\nextendedKeyUsage=serverAuth\n".write(toFile: "\(directory)/ext.cnf", atomically: true, encoding: .utf8)
        try await openssl.run(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                               "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"], in: directory)
        return TestCertificates(caCertificate: "\(directory)/ca.pem", serverCertificate: "\(directory)/server.pem", serverKey: "\(directory)/server.key")
    }
}
