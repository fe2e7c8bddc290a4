//! The walk over INSERT, UPDATE and DELETE: the target must be granted
//! for writing, and what a write reads (its WHERE, its SELECT, its
//! assignments) is walked as a query is.

// A part of the walk: its types, helpers and sqlparser names are the walk's.
use super::*;

impl<'a> Walk<'a> {
    pub(super) fn insert(&mut self, insert: &'a Insert) -> Result<(), Error> {
        let Insert {
            insert_token: _,
            optimizer_hints,
            or,
            ignore,
            into: _,
            table,
            table_alias,
            columns,
            by_name,
            overwrite,
            source,
            assignments,
            partitioned,
            after_columns,
            overriding,
            has_table_keyword,
            on,
            returning,
            output,
            replace_into,
            priority,
            insert_alias,
            settings,
            format_clause,
            multi_table_insert_type,
            multi_table_into_clauses,
            multi_table_when_clauses,
            multi_table_else_clause,
        } = insert;
        if or.is_some() || *replace_into || *ignore {
            return Err(invalid(
                "INSERT OR … is SQLite's own: write INSERT … ON CONFLICT (…) DO UPDATE SET … or DO NOTHING",
            ));
        }
        if returning.is_some() {
            return Err(no_returning());
        }
        if !optimizer_hints.is_empty()
            || table_alias.is_some()
            || *by_name
            || *overwrite
            || !assignments.is_empty()
            || partitioned.is_some()
            || !after_columns.is_empty()
            || overriding.is_some()
            || *has_table_keyword
            || output.is_some()
            || priority.is_some()
            || insert_alias.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || multi_table_insert_type.is_some()
            || !multi_table_into_clauses.is_empty()
            || !multi_table_when_clauses.is_empty()
            || multi_table_else_clause.is_some()
        {
            return Err(nodes::not_portable(insert));
        }
        let TableObject::TableName(name) = table else {
            return Err(invalid("insert into a table by its name"));
        };
        let target = self.target(name)?;
        for column in columns {
            one_part(column)?;
        }
        // The rows to insert do not see the target.
        let Some(source) = source else {
            return Err(invalid("INSERT needs VALUES (…) or a SELECT"));
        };
        self.query(source)?;
        match on {
            None => Ok(()),
            Some(OnInsert::OnConflict(OnConflict {
                conflict_target,
                action,
            })) => {
                // The conflict's clauses see the target and `excluded`, the
                // row that was to be inserted.
                let mut items = Vec::new();
                self.bind(&mut items, target.clone(), Relation::Table(target.clone()));
                self.bind(&mut items, "excluded".into(), Relation::Table(target));
                self.in_scope(items, |this| {
                    match conflict_target {
                        None => {}
                        Some(ConflictTarget::Columns { columns, predicate }) => {
                            for column in columns {
                                nodes::ident(column)?;
                            }
                            if let Some(predicate) = predicate {
                                this.expr(predicate)?;
                            }
                        }
                        Some(ConflictTarget::OnConstraint(_)) => {
                            return Err(invalid(
                                "ON CONFLICT ON CONSTRAINT is PostgreSQL's own: name the columns, ON CONFLICT (…)",
                            ));
                        }
                    }
                    match action {
                        OnConflictAction::DoNothing => Ok(()),
                        OnConflictAction::DoUpdate(DoUpdate {
                            assignments,
                            selection,
                        }) => this.set_where(assignments, selection),
                    }
                })
            }
            Some(_) => Err(invalid(
                "ON DUPLICATE KEY UPDATE is not portable: write ON CONFLICT (…) DO UPDATE SET …",
            )),
        }
    }

    pub(super) fn update(&mut self, update: &'a Update) -> Result<(), Error> {
        let Update {
            update_token: _,
            optimizer_hints,
            table,
            on_cluster,
            assignments,
            from,
            selection,
            returning,
            output,
            or,
            order_by,
            limit,
            settings,
        } = update;
        if or.is_some() {
            return Err(invalid("UPDATE OR … is SQLite's own"));
        }
        if returning.is_some() {
            return Err(no_returning());
        }
        if !order_by.is_empty() || limit.is_some() {
            return Err(invalid(
                "UPDATE … ORDER BY/LIMIT is SQLite's own: select the rows in WHERE",
            ));
        }
        if !optimizer_hints.is_empty()
            || on_cluster.is_some()
            || output.is_some()
            || settings.is_some()
            || !table.joins.is_empty()
        {
            return Err(nodes::not_portable(update));
        }
        let mut items = Vec::new();
        self.target_binding(&table.relation, &mut items)?;
        match from {
            None => {}
            Some(UpdateTableFromKind::AfterSet(from)) => {
                for item in from {
                    self.source(item, &mut items)?;
                }
            }
            Some(UpdateTableFromKind::BeforeSet(_)) => return Err(nodes::not_portable(update)),
        }
        self.in_scope(items, |this| this.set_where(assignments, selection))
    }

    pub(super) fn delete(&mut self, delete: &'a Delete) -> Result<(), Error> {
        let Delete {
            delete_token: _,
            optimizer_hints,
            tables,
            from,
            on_cluster,
            using,
            selection,
            returning,
            output,
            order_by,
            limit,
            settings,
        } = delete;
        if returning.is_some() {
            return Err(no_returning());
        }
        if !order_by.is_empty() || limit.is_some() || !tables.is_empty() {
            return Err(invalid(
                "DELETE … ORDER BY/LIMIT is SQLite's own: select the rows in WHERE",
            ));
        }
        if using.is_some() {
            return Err(invalid(
                "DELETE … USING is PostgreSQL's own: select the rows in WHERE (… IN (SELECT …))",
            ));
        }
        if !optimizer_hints.is_empty()
            || on_cluster.is_some()
            || output.is_some()
            || settings.is_some()
        {
            return Err(nodes::not_portable(delete));
        }
        let FromTable::WithFromKeyword(from) = from else {
            return Err(invalid("DELETE FROM one table"));
        };
        let [TableWithJoins { relation, joins }] = from.as_slice() else {
            return Err(invalid("DELETE FROM one table"));
        };
        if !joins.is_empty() {
            return Err(invalid("DELETE FROM one table"));
        }
        let mut items = Vec::new();
        self.target_binding(relation, &mut items)?;
        self.in_scope(items, |this| match selection {
            Some(selection) => this.expr(selection),
            None => Ok(()),
        })
    }

    /// The table an UPDATE or DELETE changes, bound under its alias.
    pub(super) fn target_binding(
        &mut self,
        factor: &'a TableFactor,
        items: &mut Vec<Binding<'a>>,
    ) -> Result<(), Error> {
        let target = self.target(plain_table(factor)?)?;
        let name = match factor {
            TableFactor::Table {
                alias: Some(alias), ..
            } => {
                table_alias(alias, false)?;
                name_of(&alias.name)
            }
            _ => target.clone(),
        };
        self.bind(items, name, Relation::Table(target));
        Ok(())
    }

    pub(super) fn assignment(
        &mut self,
        assignment: &'a sqlparser::ast::Assignment,
    ) -> Result<(), Error> {
        match &assignment.target {
            sqlparser::ast::AssignmentTarget::ColumnName(column) => one_part(column)?,
            sqlparser::ast::AssignmentTarget::Tuple(_) => {
                return Err(nodes::not_portable(assignment));
            }
        }
        self.expr(&assignment.value)
    }
}
