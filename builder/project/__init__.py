"""The project as the user wrote it: manifest, Dockerfile, ignore rules, files, lock, .env.

Reads and checks inputs; builds nothing. Public: `manifest` (Manifest, load_manifest, BaseSource,
RuleSpec), `yaml_source`, `dockerfile` (parse, Instruction), `ignore` (IgnoreRules), `tree`
(walk_project, scan_project, ProjectTree, merkle_root), `statcache`, `lock` (Lock, LockState),
`dotenv` (load), `discover` (find_project), `skip_parse` (reason), `naming`, `init` (init_project).
"""
