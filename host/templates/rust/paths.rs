
        // paths: the roots [guest.paths] grants; a path cannot leave its root.
        let files = paths::open("files")?;
        if req.is_post() {
            files.write("note.txt", req.form().text("note").as_bytes())?;
            return Ok(Response::redirect(&req.link("/")));
        }
        let note = match files.read("note.txt") {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if matches!(e.code, ErrorCode::NotFound) => String::new(),
            Err(e) => return Err(e),
        };
        body.push_str(&format!(
            "<form method=\"post\"><label>Note <input name=\"note\" value=\"{}\"></label> \
             <button>Save</button></form>",
            escape(&note)
        ));
