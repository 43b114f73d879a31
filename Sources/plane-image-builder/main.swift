// plane-image-builder: packages an executable into a container image (OCI layout and a
// `docker load` archive). Used by the `build-image` package plugin and by the tests.
//
// usage: plane-image-builder <executable> <name> <output-directory> [tag] [KEY=VALUE ...]
import Foundation
import ImageBuilder

let arguments = CommandLine.arguments
guard arguments.count >= 4 else {
    FileHandle.standardError.write(Data("usage: plane-image-builder <executable> <name> <output-directory> [tag] [KEY=VALUE ...]\n".utf8))
    exit(64)
}
var environment: [String: String] = [:]
for pair in arguments.dropFirst(5) {
    guard let eq = pair.firstIndex(of: "=") else {
        FileHandle.standardError.write(Data("plane-image-builder: environment entries are KEY=VALUE, got '\(pair)'\n".utf8))
        exit(64)
    }
    environment[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
}
let builder = ContainerImageBuilder(executable: arguments[1], name: arguments[2], tag: arguments.count > 4 ? arguments[4] : "latest", environment: environment)
do {
    try FileManager.default.createDirectory(atPath: arguments[3], withIntermediateDirectories: true)
    let result = try builder.build(into: arguments[3])
    let data = try JSONEncoder().encode(result)
    print(String(decoding: data, as: UTF8.self))
} catch {
    FileHandle.standardError.write(Data("plane-image-builder: \(error)\n".utf8))
    exit(1)
}
