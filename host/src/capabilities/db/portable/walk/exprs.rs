//! The walk over expressions, ORDER BY, LIMIT and windows, and the
//! columns a FROM item or a query gives, for `x.y` and `*`.

// A part of the walk: its types, helpers and sqlparser names are the walk's.
use super::*;

impl<'a> Walk<'a> {
    pub(super) fn order_by(&mut self, order_by: &'a OrderBy) -> Result<(), Error> {
        let OrderBy { kind, interpolate } = order_by;
        match kind {
            OrderByKind::Expressions(exprs) if interpolate.is_none() => {
                for expr in exprs {
                    self.order_by_expr(expr)?;
                }
                Ok(())
            }
            _ => Err(nodes::not_portable(order_by)),
        }
    }

    pub(super) fn order_by_expr(&mut self, expr: &'a OrderByExpr) -> Result<(), Error> {
        let OrderByExpr {
            expr: value,
            options: _,
            with_fill,
        } = expr;
        if with_fill.is_some() {
            return Err(nodes::not_portable(expr));
        }
        self.expr(value)
    }

    pub(super) fn limit(&mut self, limit: &'a LimitClause) -> Result<(), Error> {
        match limit {
            LimitClause::LimitOffset {
                limit: count,
                offset,
                limit_by,
            } if limit_by.is_empty() => {
                if let Some(count) = count {
                    self.expr(count)?;
                }
                match offset {
                    None => Ok(()),
                    Some(Offset {
                        value,
                        rows: OffsetRows::None,
                    }) => self.expr(value),
                    Some(other) => Err(nodes::not_portable(other)),
                }
            }
            LimitClause::OffsetCommaLimit { .. } => Err(invalid(
                "LIMIT offset, count is SQLite's own: write LIMIT count OFFSET offset",
            )),
            other => Err(nodes::not_portable(other)),
        }
    }

    pub(super) fn window(&mut self, spec: &'a WindowSpec) -> Result<(), Error> {
        let WindowSpec {
            window_name,
            partition_by,
            order_by,
            window_frame,
        } = spec;
        if let Some(name) = window_name {
            nodes::ident(name)?;
        }
        for expr in partition_by {
            self.expr(expr)?;
        }
        for expr in order_by {
            self.order_by_expr(expr)?;
        }
        if let Some(WindowFrame {
            units: _,
            start_bound,
            end_bound,
        }) = window_frame
        {
            for bound in std::iter::once(start_bound).chain(end_bound) {
                match bound {
                    WindowFrameBound::Preceding(Some(expr))
                    | WindowFrameBound::Following(Some(expr)) => self.expr(expr)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// An expression: the node's kind checked (`nodes::expression`), then
    /// its children walked. The depth of the recursion is bounded by
    /// `depth.rs` before parsing.
    pub(super) fn expr(&mut self, expr: &'a Expr) -> Result<(), Error> {
        nodes::expression(expr)?;
        match expr {
            Expr::Identifier(column) => nodes::column(column),
            Expr::CompoundIdentifier(parts) => {
                for part in parts {
                    nodes::ident(part)?;
                }
                let [table, column] = parts.as_slice() else {
                    return Err(nodes::not_portable(expr));
                };
                self.qualified(table, column)
            }
            Expr::Value(value) => nodes::value(value),
            Expr::Nested(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::UnaryOp { expr: inner, .. }
            | Expr::Collate { expr: inner, .. }
            | Expr::Cast { expr: inner, .. }
            | Expr::Trim { expr: inner, .. } => self.expr(inner),
            Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right)
            | Expr::BinaryOp { left, right, .. } => {
                self.expr(left)?;
                self.expr(right)
            }
            Expr::In {
                expr: value,
                target,
                ..
            } => {
                self.expr(value)?;
                match target {
                    InTarget::List(list) => {
                        for item in list {
                            self.expr(item)?;
                        }
                        Ok(())
                    }
                    InTarget::Subquery(query) => self.query(query),
                    _ => Err(nodes::not_portable(expr)),
                }
            }
            Expr::Between {
                expr: value,
                low,
                high,
                ..
            } => {
                self.expr(value)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => self.query(subquery),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    self.expr(operand)?;
                }
                for when in conditions {
                    self.expr(&when.condition)?;
                    self.expr(&when.result)?;
                }
                if let Some(result) = else_result {
                    self.expr(result)?;
                }
                Ok(())
            }
            Expr::Like {
                expr: value,
                pattern,
                escape_char,
                ..
            } => {
                self.expr(value)?;
                self.expr(pattern)?;
                if let Some(escape) = escape_char {
                    self.expr(escape)?;
                }
                Ok(())
            }
            Expr::Substring {
                expr: value,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(value)?;
                for part in substring_from.iter().chain(substring_for) {
                    self.expr(part)?;
                }
                Ok(())
            }
            Expr::Function(function) => self.function(function),
            other => Err(nodes::not_portable(other)),
        }
    }

    pub(super) fn function(&mut self, function: &'a Function) -> Result<(), Error> {
        // The name, `parameters`, `within_group` and the rest are checked
        // by `nodes::function_call`, which `nodes::expression` ran.
        if let FunctionArguments::List(list) = &function.args {
            for arg in &list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) = arg {
                    self.expr(expr)?;
                }
            }
        }
        if let Some(filter) = &function.filter {
            self.expr(filter)?;
        }
        match &function.over {
            None => Ok(()),
            Some(WindowType::NamedWindow(name)) => nodes::ident(name),
            Some(WindowType::WindowSpec(spec)) => self.window(spec),
        }
    }

    /// `table.column`: a table in reach, and a column it has.
    pub(super) fn qualified(&mut self, table: &Ident, column: &Ident) -> Result<(), Error> {
        let relation = self.in_reach(table, &format!("{table}.{column}"))?;
        let columns = self.columns(&relation);
        if !columns.contains(&name_of(column)) {
            return Err(invalid(format!(
                "`{table}.{column}`: `{table}` has no column `{column}` (a computed column of a subquery needs a name: AS …)"
            )));
        }
        Ok(())
    }

    /// What `table` stands for where it is used.
    pub(super) fn in_reach(&mut self, table: &Ident, used: &str) -> Result<Relation<'a>, Error> {
        let name = name_of(table);
        let Some(binding) = self.scope.iter().rev().find(|b| b.name == name) else {
            return Err(invalid(format!(
                "`{used}`: no table or subquery named `{table}` is in reach here; name one of this query's FROM"
            )));
        };
        let relation = binding.relation.clone();
        self.qualifiers.push(name);
        Ok(relation)
    }

    /// The columns a table, CTE or subquery has.
    pub(super) fn columns(&mut self, relation: &Relation<'a>) -> Rc<BTreeSet<String>> {
        match relation {
            Relation::Table(table) => {
                Rc::new(self.schema.columns.get(table).cloned().unwrap_or_default())
            }
            Relation::Cte(cte) if !cte.alias.columns.is_empty() => Rc::new(
                cte.alias
                    .columns
                    .iter()
                    .map(|column| name_of(&column.name))
                    .collect(),
            ),
            Relation::Cte(cte) => self.outputs(&cte.query),
            Relation::Derived(query) => self.outputs(query),
        }
    }

    /// The names of a query's result columns: its first SELECT's.
    pub(super) fn outputs(&mut self, query: &'a Query) -> Rc<BTreeSet<String>> {
        let key: *const Query = query;
        if let Some(found) = self.outputs.get(&key) {
            return found.clone();
        }
        if self.expanding >= EXPANSION {
            return Rc::default();
        }
        self.expanding += 1;
        let mut names = BTreeSet::new();
        let mut body = query.body.as_ref();
        loop {
            match body {
                SetExpr::SetOperation { left, .. } => body = left,
                SetExpr::Query(inner) => {
                    names = self.outputs(inner).as_ref().clone();
                    break;
                }
                SetExpr::Select(select) => {
                    self.select_outputs(select, &mut names);
                    break;
                }
                SetExpr::Values(values) => {
                    let width = values.rows.first().map_or(0, |row| row.len());
                    names.extend((1..=width).map(|i| format!("column{i}")));
                    break;
                }
                _ => break,
            }
        }
        self.expanding -= 1;
        let names = Rc::new(names);
        self.outputs.insert(key, names.clone());
        names
    }

    pub(super) fn select_outputs(&mut self, select: &'a Select, names: &mut BTreeSet<String>) {
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(column)) => {
                    names.insert(name_of(column));
                }
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                    names.extend(parts.last().map(name_of));
                }
                SelectItem::ExprWithAlias { alias, .. } => {
                    names.insert(name_of(alias));
                }
                SelectItem::Wildcard(_) => {
                    for item in &select.from {
                        self.item_columns(item, None, names);
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(table),
                    _,
                ) => {
                    let table = plain_name(table);
                    for item in &select.from {
                        self.item_columns(item, table.as_deref(), names);
                    }
                }
                // A computed column PostgreSQL names on its own (`count`,
                // `?column?`): no name to count on.
                _ => {}
            }
        }
    }

    /// The columns of the items of one FROM entry (only of the item named
    /// `only`, if given).
    pub(super) fn item_columns(
        &mut self,
        item: &'a TableWithJoins,
        only: Option<&str>,
        names: &mut BTreeSet<String>,
    ) {
        for factor in std::iter::once(&item.relation).chain(item.joins.iter().map(|j| &j.relation))
        {
            let (name, relation) = match factor {
                TableFactor::Table { name, alias, .. } => (
                    alias
                        .as_ref()
                        .map(|a| name_of(&a.name))
                        .or_else(|| plain_name(name)),
                    self.factors.get(&(factor as *const _)).cloned(),
                ),
                TableFactor::Derived {
                    subquery, alias, ..
                } => (
                    alias.as_ref().map(|a| name_of(&a.name)),
                    Some(Relation::Derived(subquery)),
                ),
                TableFactor::NestedJoin {
                    table_with_joins, ..
                } => {
                    self.item_columns(table_with_joins, only, names);
                    continue;
                }
                _ => continue,
            };
            if only.is_some() && name.as_deref() != only {
                continue;
            }
            if let Some(relation) = relation {
                names.extend(self.columns(&relation).iter().cloned());
            }
        }
    }
}
