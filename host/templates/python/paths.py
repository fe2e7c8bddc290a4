
    # paths: the roots [guest.paths] grants; a path cannot leave its root.
    files = paths.open("files")
    if req.is_post:
        files.write("note.txt", req.form().text("note"))
        return Response.redirect(req.link("/"))
    try:
        note = files.read("note.txt").decode()
    except NotFound:
        note = ""
    body += (f'<form method="post"><label>Note <input name="note" value="{escape(note)}"></label> '
             "<button>Save</button></form>")
